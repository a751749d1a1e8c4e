import { readU32, writeU32 } from "./little-endian.ts";

/**
 * Guest-physical memory as the unit sees it. Reads and writes outside RAM return false
 * instead of throwing, so a guest's bad pointer becomes a fault, never a host exception.
 */
export interface GuestMemory {
  /** Size of RAM in bytes; guest-physical addresses [0, size) are RAM. */
  readonly size: number;
  read(address: bigint, into: Uint8Array): boolean;
  write(address: bigint, data: Uint8Array): boolean;
  /**
   * Optional fast path: all of RAM as one byte array starting at guest-physical 0. A getter may
   * return a fresh view each time (v86 re-creates its view when its memory grows).
   */
  readonly direct?: Uint8Array;
  /**
   * Optional: called after the unit wrote `length` bytes at `address` through `direct`, for a host
   * that must learn of DMA writes (v86 invalidates JIT code there).
   */
  afterDirectWrite?(address: number, length: number): void;
}

/** Plain guest RAM in an ArrayBuffer. */
export class GuestRam implements GuestMemory {
  readonly direct: Uint8Array;
  readonly size: number;

  constructor(bytes: number) {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes > 2 ** 32) {
      throw new RangeError(`GuestRam: size ${bytes} must be a whole number of bytes in 1..4 GiB`);
    }
    this.size = bytes;
    this.direct = new Uint8Array(bytes);
  }

  read(address: bigint, into: Uint8Array): boolean {
    const start = this.offsetOf(address, into.length);
    if (start < 0) return false;
    into.set(this.direct.subarray(start, start + into.length));
    return true;
  }

  write(address: bigint, data: Uint8Array): boolean {
    const start = this.offsetOf(address, data.length);
    if (start < 0) return false;
    this.direct.set(data, start);
    return true;
  }

  /** Little-endian helpers for tests and the in-process guest. */
  read32(address: number): number {
    return readU32(this.direct, address);
  }
  write32(address: number, value: number): void {
    writeU32(this.direct, address, value);
  }
  read64(address: number): bigint {
    return (BigInt(this.read32(address + 4)) << 32n) | BigInt(this.read32(address));
  }
  write64(address: number, value: bigint): void {
    this.write32(address, Number(value & 0xffff_ffffn));
    this.write32(address + 4, Number((value >> 32n) & 0xffff_ffffn));
  }

  private offsetOf(address: bigint, length: number): number {
    if (address < 0n || address + BigInt(length) > BigInt(this.size)) return -1;
    return Number(address);
  }
}
