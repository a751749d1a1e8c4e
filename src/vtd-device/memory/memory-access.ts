/**
 * The unit's own reads and writes of guest memory (tables, queue, status writes, DMA), with
 * numbers for addresses and a fast path over `GuestMemory.direct`. Allocation-free on the fast
 * path; failures (outside RAM) are return values, never exceptions.
 */
import type { GuestMemory } from "./guest-memory.ts";
import { readU32, writeU32 } from "./little-endian.ts";

export class MemoryAccess {
  private readonly scratch = new Uint8Array(8);

  constructor(readonly memory: GuestMemory) {}

  /** Little-endian dword at `address`, or -1 when it is not RAM. */
  read32(address: number): number {
    const ram = this.memory.direct;
    if (ram) {
      if (address < 0 || address + 4 > ram.length) return -1;
      return readU32(ram, address);
    }
    const s = this.scratch.subarray(0, 4);
    if (!this.memory.read(BigInt(address), s)) return -1;
    return readU32(s, 0);
  }

  write32(address: number, value: number): boolean {
    const ram = this.memory.direct;
    if (ram) {
      if (address < 0 || address + 4 > ram.length) return false;
      writeU32(ram, address, value);
      this.memory.afterDirectWrite?.(address, 4);
      return true;
    }
    const s = this.scratch.subarray(0, 4);
    writeU32(s, 0, value);
    return this.memory.write(BigInt(address), s);
  }

  /**
   * The unit's locked update of a table dword (the Accessed/Dirty flags, VT-d 5.10 §3.6.2): `value`
   * is stored only while memory still holds `expected`, the dword the walk used, so a store the
   * guest made since is never overwritten. True when stored.
   */
  compareAndSet32(address: number, expected: number, value: number): boolean {
    if (this.read32(address) !== expected >>> 0) return false;
    return this.write32(address, value);
  }

  /** Copies `length` bytes of guest memory at `address` into `into` at `offset`. */
  readInto(address: number, into: Uint8Array, offset: number, length: number): boolean {
    const ram = this.memory.direct;
    if (!ram) return this.read(address, into, offset, length);
    if (address < 0 || address + length > ram.length) return false;
    if (length > 64) into.set(ram.subarray(address, address + length), offset);
    else for (let i = 0; i < length; i++) into[offset + i] = ram[address + i]!;
    return true;
  }

  /** `readInto` without the fast path (its own function keeps `readInto` small enough to inline). */
  private read(address: number, into: Uint8Array, offset: number, length: number): boolean {
    return this.memory.read(BigInt(address), into.subarray(offset, offset + length));
  }

  /** Copies `length` bytes of `data` from `offset` into guest memory at `address`. */
  writeFrom(address: number, data: Uint8Array, offset: number, length: number): boolean {
    const ram = this.memory.direct;
    if (!ram) return this.write(address, data, offset, length);
    if (address < 0 || address + length > ram.length) return false;
    if (length <= 64) for (let i = 0; i < length; i++) ram[address + i] = data[offset + i]!;
    // A whole buffer is copied as it is: no view to create.
    else ram.set(offset === 0 && length === data.length ? data : data.subarray(offset, offset + length), address);
    this.memory.afterDirectWrite?.(address, length);
    return true;
  }

  /** `writeFrom` without the fast path. */
  private write(address: number, data: Uint8Array, offset: number, length: number): boolean {
    return this.memory.write(BigInt(address), data.subarray(offset, offset + length));
  }
}
