/**
 * Table memory as a unit sees it when CPU stores do not reach it at once: per 64-byte line of
 * table memory it read, the bytes it read then. A later read of that line returns those bytes
 * while the copy lives, whatever memory holds now; a line it never read is read from `source`.
 * Two hardware reasons use it: the write buffer of CAP.RWBF = 1 (write-buffer.ts) and CPU caches
 * the unit does not snoop, ECAP.C = 0 (cpu-caches.ts). They differ in what ends a copy.
 *
 * Bounded: `LINE_COPIES` lines (64 KiB of copies), direct-mapped by line number; a line evicted
 * from its slot has reached memory. A read costs one tag compare; `dropAll` is one generation
 * step (no clearing). Only the unit's table reads (read32) go through it; a plain store by the
 * unit (write32) ends the copy of its line first. Its Accessed/Dirty updates (compareAndSet32)
 * act on memory as it is: a dword the guest changed since the copy was taken keeps the guest's
 * value (as the CPU's write-back would leave it), never the copy's. Reads allocate nothing.
 */
import type { GuestMemory } from "./guest-memory.ts";
import { MemoryAccess } from "./memory-access.ts";

export const LINE = 64;
const DWORDS = LINE / 4;
/** Lines remembered at most (a power of two). */
export const LINE_COPIES = 1024;

export class LineCopies extends MemoryAccess {
  /** Line number + 1 of the copy in each slot; 0 = empty. */
  private readonly tag = new Float64Array(LINE_COPIES);
  /** The generation each slot's copy belongs to. */
  private readonly generation = new Uint32Array(LINE_COPIES);
  /** When (the `now` clock) each copy was taken. */
  private readonly taken = new Float64Array(LINE_COPIES);
  private readonly copies = new Int32Array(LINE_COPIES * DWORDS);
  private current = 1;

  /**
   * `source`: where lines come from (memory, or a view in front of it); `lifetimeMs`: how long a
   * copy hides memory at most (Infinity: until dropped), on the `now` clock.
   */
  constructor(memory: GuestMemory, private readonly source: MemoryAccess, private readonly lifetimeMs: number, private readonly now: () => number) {
    super(memory);
  }

  /** Every copy ends: memory becomes visible. */
  dropAll(): void {
    this.current = this.current === 0xffff_ffff ? 1 : this.current + 1;
    if (this.current === 1) this.tag.fill(0);
  }

  /** The copy of `address`'s line ends, if there is one; true when there was. */
  dropLine(address: number): boolean {
    if (!(address >= 0)) return false;
    const line = Math.floor(address / LINE);
    const slot = line & (LINE_COPIES - 1);
    if (this.tag[slot] !== line + 1) return false;
    this.tag[slot] = 0;
    return this.generation[slot] === this.current;
  }

  /** A dword of table memory as the unit sees it (see the header); -1 outside RAM. */
  override read32(address: number): number {
    const slot = this.slotOf(address);
    if (slot >= 0) return this.copies[slot * DWORDS + ((address % LINE) >>> 2)]! >>> 0;
    const value = this.source.read32(address);
    if (value < 0 || address % 4 !== 0) return value;
    this.remember(address);
    return value;
  }

  /** The unit's own store reaches memory; its line is read afresh afterwards. */
  override write32(address: number, value: number): boolean {
    this.dropLine(address);
    return this.source.write32(address, value);
  }

  /**
   * The locked update reaches memory (through `source`) only while memory still holds `expected`;
   * the copy of its line, if any, then shows the new value too (the rest of the line stays as read).
   */
  override compareAndSet32(address: number, expected: number, value: number): boolean {
    if (!this.source.compareAndSet32(address, expected, value)) return false;
    const slot = this.slotOf(address);
    if (slot >= 0) this.copies[slot * DWORDS + ((address % LINE) >>> 2)] = value | 0;
    return true;
  }

  /**
   * The dword the unit would read at `address` without remembering anything (the checker's view);
   * undefined when no copy hides memory there.
   */
  copied(address: number): number | undefined {
    const slot = this.slotOf(address);
    return slot < 0 ? undefined : this.copies[slot * DWORDS + ((address % LINE) >>> 2)]! >>> 0;
  }

  /** The slot of a live copy of `address`'s line, or -1. */
  private slotOf(address: number): number {
    // Tags are line + 1 with 0 for an empty slot: line -1 (and anything below 0) is never copied.
    if (!(address >= 0)) return -1;
    const line = Math.floor(address / LINE);
    const slot = line & (LINE_COPIES - 1);
    if (this.tag[slot] !== line + 1 || this.generation[slot] !== this.current) return -1;
    if (this.lifetimeMs !== Infinity && this.now() - this.taken[slot]! > this.lifetimeMs) {
      this.tag[slot] = 0;
      return -1;
    }
    return slot;
  }

  private remember(address: number): void {
    const line = Math.floor(address / LINE);
    const slot = line & (LINE_COPIES - 1);
    const start = line * LINE;
    const base = slot * DWORDS;
    for (let i = 0; i < DWORDS; i++) {
      const value = this.source.read32(start + 4 * i);
      if (value < 0) return; // part of the line is not RAM: keep nothing
      this.copies[base + i] = value | 0;
    }
    this.tag[slot] = line + 1;
    this.generation[slot] = this.current;
    this.taken[slot] = this.now();
  }
}
