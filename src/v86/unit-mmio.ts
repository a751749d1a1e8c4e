/**
 * The VT-d unit's register page in v86's physical address space. v86 maps MMIO in 128 KiB blocks,
 * so the block 0xFED80000-0xFED9FFFF is claimed: inside the unit's 4 KiB page, accesses go to the
 * register file (reserved space past the registers reads 0); elsewhere in the block they behave as
 * unmapped memory (reads all ones, writes dropped). v86 has only 8- and 32-bit handlers: a 64-bit
 * guest access arrives as two 32-bit ones, low half first, and a 16-bit write as two 8-bit ones.
 */
import { VTD_REGISTER_PAGE_SIZE, VTD_UNIT_BASE } from "../spec/platform.ts";

export { VTD_REGISTER_PAGE_SIZE, VTD_UNIT_BASE };
const MMIO_BLOCK = 0x2_0000;

/** The register file as the platform calls it, with numbers (VtdDevice has this shape). */
export interface RegisterFile {
  readonly registerWindowSize: number;
  mmioRead(offset: number, size: 1 | 2 | 4): number;
  mmioWrite(offset: number, size: 1 | 2 | 4, value: number): void;
}

export interface MmioMapper {
  mmap_register(
    addr: number,
    size: number,
    read8: (addr: number) => number,
    write8: (addr: number, value: number) => void,
    read32: (addr: number) => number,
    write32: (addr: number, value: number) => void,
  ): void;
}

export function mapVtdUnit(io: MmioMapper, unit: RegisterFile, base = VTD_UNIT_BASE): void {
  if (base % VTD_REGISTER_PAGE_SIZE !== 0) throw new RangeError(`VT-d unit base 0x${base.toString(16)} must be 4 KiB aligned`);
  const block = base - (base % MMIO_BLOCK);
  const window = unit.registerWindowSize;
  /** -1: outside the page (unmapped); -2: reserved space in the page; else the register offset. */
  const locate = (addr: number, size: number): number => {
    const offset = (addr - base) | 0;
    if (offset < 0 || offset + size > VTD_REGISTER_PAGE_SIZE) return -1;
    return offset + size <= window ? offset : -2;
  };
  io.mmap_register(
    block,
    MMIO_BLOCK,
    (addr) => {
      const offset = locate(addr, 1);
      if (offset === -1) return 0xff;
      return offset === -2 ? 0 : unit.mmioRead(offset, 1);
    },
    (addr, value) => {
      const offset = locate(addr, 1);
      if (offset >= 0) unit.mmioWrite(offset, 1, value & 0xff);
    },
    (addr) => {
      const offset = locate(addr, 4);
      if (offset === -1) return -1;
      return offset === -2 ? 0 : unit.mmioRead(offset, 4) | 0;
    },
    (addr, value) => {
      const offset = locate(addr, 4);
      if (offset >= 0) unit.mmioWrite(offset, 4, value >>> 0);
    },
  );
}
