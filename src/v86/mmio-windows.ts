/**
 * Memory windows of our PCI functions (their BARs) on v86's MMIO map, which has one handler set
 * per 128 KiB block (cpu.memory_map_read8/write8/read32/write32, indexed by address >>> 17).
 *
 * A window may be smaller than a block and may move (a BIOS or the guest programs the BAR). The
 * first window placed in a block saves the block's handlers and installs a dispatcher; an access
 * inside one of the block's windows goes to that window's region, any other access to the saved
 * handlers (v86's unmapped memory, its VGA ROM, another device). When the last window leaves a
 * block, the saved handlers are put back, so moving a BAR leaves no trace at its old place.
 * Windows in guest RAM (below v86's memory size) are not placed: v86 never asks MMIO there. Nor
 * are windows over the platform's fixed ranges (IO-APIC, VT-d unit, local APIC/MSI): as in a
 * chipset those decode first, so a BAR programmed over them stays undecoded rather than hiding
 * the guest's IOMMU or interrupt controllers. Accesses reach the region as numbers (no bigint per
 * access).
 */
import type { MmioRegion } from "../devices/bus.ts";
import type { V86Cpu } from "./internals.ts";
import { IOAPIC_BASE } from "../spec/platform.ts";
import { MSI_ADDRESS_BASE } from "./lapic-msi.ts";
import { VTD_UNIT_BASE } from "./unit-mmio.ts";

/** [start, end) ranges no BAR may cover: IO-APIC (4 KiB), the VT-d unit (4 KiB), LAPIC / MSI window (1 MiB). */
const FIXED_RANGES: readonly (readonly [number, number])[] = [
  [IOAPIC_BASE, IOAPIC_BASE + 0x1000],
  [VTD_UNIT_BASE, VTD_UNIT_BASE + 0x1000],
  [MSI_ADDRESS_BASE, MSI_ADDRESS_BASE + 0x10_0000],
];

const BLOCK_SHIFT = 17;
const BLOCK_SIZE = 1 << BLOCK_SHIFT;

type Read = (addr: number) => number;
type Write = (addr: number, value: number) => void;

/** v86's per-block MMIO handler tables (CPU fields in 0.5.462, not in its typings). */
interface V86MemoryMaps {
  memory_map_read8: Read[];
  memory_map_write8: Write[];
  memory_map_read32: Read[];
  memory_map_write32: Write[];
}

interface Handlers {
  read8: Read;
  write8: Write;
  read32: Read;
  write32: Write;
}

export class MmioWindow {
  /** Where the window decodes now, or undefined while it is off the map. */
  address: number | undefined;

  constructor(
    readonly size: number,
    readonly region: MmioRegion,
  ) {}
}

interface Block {
  saved: Handlers;
  windows: MmioWindow[];
}

export class MmioWindows {
  private readonly maps: V86MemoryMaps;
  private readonly blocks = new Map<number, Block>();

  constructor(private readonly cpu: V86Cpu) {
    const maps = cpu as unknown as Partial<V86MemoryMaps>;
    if (!Array.isArray(maps.memory_map_read8) || !Array.isArray(maps.memory_map_write8) || !Array.isArray(maps.memory_map_read32) || !Array.isArray(maps.memory_map_write32)) {
      throw new Error("v86 internals missing (expected v86 0.5.462): cpu.memory_map_read8/write8/read32/write32");
    }
    this.maps = maps as V86MemoryMaps;
  }

  /** Puts `window` at `address` (undefined: off the map), leaving its previous place as it was. */
  place(window: MmioWindow, address: number | undefined): void {
    const target = address !== undefined && this.placeable(address, window.size) ? address : undefined;
    if (target === window.address) return;
    if (window.address !== undefined) for (const index of this.blockIndices(window.address, window.size)) this.leave(index, window);
    window.address = target;
    if (target !== undefined) for (const index of this.blockIndices(target, window.size)) this.enter(index, window);
  }

  private placeable(address: number, size: number): boolean {
    const ramEnd = this.cpu.memory_size[0]! >>> 0;
    if (address < ramEnd || address + size > 2 ** 32) return false;
    return FIXED_RANGES.every(([start, end]) => address + size <= start || address >= end);
  }

  private *blockIndices(address: number, size: number): Generator<number> {
    for (let index = address >>> BLOCK_SHIFT; index <= (address + size - 1) >>> BLOCK_SHIFT; index++) yield index;
  }

  private enter(index: number, window: MmioWindow): void {
    let block = this.blocks.get(index);
    if (!block) {
      const m = this.maps;
      block = { saved: { read8: m.memory_map_read8[index]!, write8: m.memory_map_write8[index]!, read32: m.memory_map_read32[index]!, write32: m.memory_map_write32[index]! }, windows: [] };
      this.blocks.set(index, block);
      this.install(index, block);
    }
    block.windows.push(window);
  }

  private leave(index: number, window: MmioWindow): void {
    const block = this.blocks.get(index);
    if (!block) return;
    block.windows = block.windows.filter((w) => w !== window);
    if (block.windows.length > 0) return;
    this.blocks.delete(index);
    const m = this.maps;
    m.memory_map_read8[index] = block.saved.read8;
    m.memory_map_write8[index] = block.saved.write8;
    m.memory_map_read32[index] = block.saved.read32;
    m.memory_map_write32[index] = block.saved.write32;
  }

  /** The block's dispatcher: the window holding the address answers, otherwise what was there before. */
  private install(index: number, block: Block): void {
    const find = (addr: number): MmioWindow | undefined => {
      const a = addr >>> 0;
      for (const w of block.windows) if (a - w.address! >= 0 && a - w.address! < w.size) return w;
      return undefined;
    };
    const { saved } = block;
    this.cpu.io.mmap_register(
      index * BLOCK_SIZE,
      BLOCK_SIZE,
      (addr) => {
        const w = find(addr);
        return w ? w.region.readMmio((addr >>> 0) - w.address!, 1) & 0xff : saved.read8(addr);
      },
      (addr, value) => {
        const w = find(addr);
        if (w) w.region.writeMmio((addr >>> 0) - w.address!, 1, value & 0xff);
        else saved.write8(addr, value);
      },
      (addr) => {
        const w = find(addr);
        return w ? w.region.readMmio((addr >>> 0) - w.address!, 4) | 0 : saved.read32(addr);
      },
      (addr, value) => {
        const w = find(addr);
        if (w) w.region.writeMmio((addr >>> 0) - w.address!, 4, value >>> 0);
        else saved.write32(addr, value);
      },
    );
  }
}
