/**
 * A CPU cache for the in-process machine, for a unit whose page walks do not snoop (ECAP.C = 0,
 * VT-d §11.4.3). CPU stores land in write-back lines and reach RAM only when flushed (CLFLUSH):
 * never by eviction, so a missing flush is always seen. What the unit sees:
 * - page walks read RAM as it is (stale where the CPU has not flushed);
 * - queue fetches are snooped (they see the CPU's lines), in the range last programmed in IQA;
 * - its writes (status writes, DMA) are snooped: a dirty line is written back first.
 * DMA reads see RAM: data buffers are put in RAM directly, never through this model.
 * With a coherent unit every store goes straight to RAM.
 */
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";

export const LINE = 64;

export class CpuCacheModel {
  private readonly dirty = new Map<number, Uint8Array>();
  private readonly flushed = new Set<number>();
  private flushCount = 0;
  private snoopStart = 0;
  private snoopEnd = 0;

  constructor(private readonly bytes: Uint8Array, readonly coherent: boolean) {}

  /** CLFLUSH count (lines). */
  get flushes(): number {
    return this.flushCount;
  }

  /** Every line address ever flushed. */
  get flushedLines(): ReadonlySet<number> {
    return this.flushed;
  }

  /** Addresses of dirty lines: stores the unit's page walks cannot see yet. */
  dirtyLines(): number[] {
    return [...this.dirty.keys()].map((i) => i * LINE).sort((a, b) => a - b);
  }

  /** The unit snoops reads in [start, end) (its invalidation queue); lines there are visible from now on. */
  setSnoopedRange(start: number, end: number): void {
    this.snoopStart = start;
    this.snoopEnd = end;
    for (const [index, line] of [...this.dirty]) if (this.snooped(index * LINE)) this.writeBack(index, line);
  }

  private snooped(address: number): boolean {
    return address >= this.snoopStart && address < this.snoopEnd;
  }

  private writeBack(index: number, line: Uint8Array): void {
    this.bytes.set(line, index * LINE);
    this.dirty.delete(index);
  }

  /** The line a CPU store goes to; undefined: straight to RAM (coherent unit, or a snooped range). */
  private lineForStore(address: number): Uint8Array | undefined {
    if (this.coherent) return undefined;
    const index = Math.floor(address / LINE);
    let line = this.dirty.get(index);
    if (this.snooped(address)) {
      if (line) this.writeBack(index, line);
      return undefined;
    }
    if (!line) {
      line = this.bytes.slice(index * LINE, index * LINE + LINE);
      this.dirty.set(index, line);
    }
    return line;
  }

  read8(address: number): number {
    if (this.dirty.size !== 0) {
      const line = this.dirty.get(Math.floor(address / LINE));
      if (line) return line[address % LINE]!;
    }
    return this.bytes[address]!;
  }

  read32(address: number): number {
    let m = this.bytes;
    let at = address;
    if (this.dirty.size !== 0) {
      if (address % LINE > LINE - 4) {
        return (this.read8(address) | (this.read8(address + 1) << 8) | (this.read8(address + 2) << 16) | (this.read8(address + 3) << 24)) >>> 0;
      }
      const line = this.dirty.get(Math.floor(address / LINE));
      if (line) {
        m = line;
        at = address % LINE;
      }
    }
    return (m[at]! | (m[at + 1]! << 8) | (m[at + 2]! << 16) | (m[at + 3]! << 24)) >>> 0;
  }

  /** An aligned 32-bit store (never straddles a line). */
  write32(address: number, value: number): void {
    const line = this.lineForStore(address);
    const m = line ?? this.bytes;
    const at = line ? address % LINE : address;
    m[at] = value;
    m[at + 1] = value >>> 8;
    m[at + 2] = value >>> 16;
    m[at + 3] = value >>> 24;
  }

  write8(address: number, value: number): void {
    const line = this.lineForStore(address);
    if (line) line[address % LINE] = value;
    else this.bytes[address] = value;
  }

  /**
   * Zeroes pages as the CPU would. A line already zero in RAM (and not dirty) reads the same to
   * everyone after the store, so only lines with old contents become dirty zero lines.
   */
  zero(address: number, length: number): void {
    if (this.coherent) {
      this.bytes.fill(0, address, address + length);
      return;
    }
    for (let at = address; at < address + length; at += LINE) {
      if (!this.dirty.has(at / LINE) && isZero(this.bytes, at)) continue;
      const line = this.lineForStore(at);
      if (line) line.fill(0);
      else this.bytes.fill(0, at, at + LINE);
    }
  }

  /** CLFLUSH of every line touching [address, address + length). */
  flush(address: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((address + length - 1) / LINE);
    for (let index = Math.floor(address / LINE); index <= last; index++) {
      this.flushCount++;
      this.flushed.add(index * LINE);
      const line = this.dirty.get(index);
      if (line) this.writeBack(index, line);
    }
  }

  /** Guest memory as the unit sees it. Its fast path (`direct`) only while no line is dirty. */
  unitView(): GuestMemory {
    const self = this;
    const bytes = this.bytes;
    return {
      size: bytes.length,
      get direct() {
        return self.dirty.size === 0 ? bytes : undefined;
      },
      read(address: bigint, into: Uint8Array): boolean {
        const at = Number(address);
        if (at < 0 || at + into.length > bytes.length) return false;
        into.set(bytes.subarray(at, at + into.length));
        if (self.snooped(at)) {
          for (let i = 0; i < into.length; i++) {
            const line = self.dirty.get(Math.floor((at + i) / LINE));
            if (line) into[i] = line[(at + i) % LINE]!;
          }
        }
        return true;
      },
      write(address: bigint, data: Uint8Array): boolean {
        const at = Number(address);
        if (at < 0 || at + data.length > bytes.length) return false;
        const last = Math.floor((at + data.length - 1) / LINE);
        for (let index = Math.floor(at / LINE); index <= last; index++) {
          const line = self.dirty.get(index);
          if (line) self.writeBack(index, line);
        }
        bytes.set(data, at);
        return true;
      },
    };
  }
}

function isZero(bytes: Uint8Array, at: number): boolean {
  for (let i = at; i < at + LINE; i++) if (bytes[i] !== 0) return false;
  return true;
}
