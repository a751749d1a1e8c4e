/**
 * The write buffer of a unit reporting CAP.RWBF = 1 (VT-d §6.8): the unit's table reads do not
 * see the CPU's latest stores until software flushes the write buffer (GCMD.WBF), or an
 * invalidation completes (register or queued: the unit flushes implicitly before reporting it,
 * VT-d §11.4.4.1, §6.5), or SRTP / TE act, or `drainMs` of unit time have passed.
 *
 * How the unit learns of guest writes without a hook in the CPU: it keeps, per 64-byte line of
 * table memory it read since the last flush, the bytes it read then; a later read of that line
 * returns those bytes while they are younger than `drainMs`, whatever memory holds now. So a store
 * to a line the unit has read (a table entry it walked, present or not) stays invisible until a
 * flush; a store to a line it never read is seen at once (as a real buffer that already drained).
 * A driver that forgets the flush after changing an entry the unit walked, and then uses it, meets
 * the old entry: a fault, or the old translation.
 *
 * Bounded: `LINES` lines (64 KiB of copies), direct-mapped by line number; a line evicted from its
 * slot has drained. A read costs one tag compare; a flush is one generation step (no clearing).
 * Only table reads (root, context, paging entries, IRTEs) go through it; DMA data, queue fetches
 * and the unit's own writes do not. Reads allocate nothing. A snapshot does not hold it: reset and
 * restore flush it (the guest's memory is what it is after a restore).
 */
import type { GuestMemory } from "./guest-memory.ts";
import { MemoryAccess } from "./memory-access.ts";

const LINE = 64;
const DWORDS = LINE / 4;
/** Lines remembered at most (a power of two). */
export const WRITE_BUFFER_LINES = 1024;

export class WriteBufferAccess extends MemoryAccess {
  /** Line number + 1 of the copy in each slot; 0 = empty. */
  private readonly tag = new Float64Array(WRITE_BUFFER_LINES);
  /** The flush generation each slot's copy belongs to. */
  private readonly generation = new Uint32Array(WRITE_BUFFER_LINES);
  /** Unit time (ms) each copy was taken. */
  private readonly taken = new Float64Array(WRITE_BUFFER_LINES);
  private readonly copies = new Int32Array(WRITE_BUFFER_LINES * DWORDS);
  private current = 1;
  /** Flushes done (GCMD.WBF and the implicit ones). */
  flushes = 0;

  constructor(memory: GuestMemory, private readonly drainMs: number, private readonly now: () => number) {
    super(memory);
  }

  /** Everything buffered becomes visible. */
  flush(): void {
    this.flushes++;
    this.current = this.current === 0xffff_ffff ? 1 : this.current + 1;
    if (this.current === 1) this.tag.fill(0);
  }

  /** A dword of table memory as the unit sees it (see the header); -1 outside RAM. */
  override read32(address: number): number {
    const slot = this.slotOf(address);
    if (slot >= 0) return this.copies[slot * DWORDS + ((address % LINE) >>> 2)]! >>> 0;
    const value = super.read32(address);
    if (value < 0 || address % 4 !== 0) return value;
    this.remember(address);
    return value;
  }

  /**
   * The dword the unit would read at `address` without remembering anything (the checker's view);
   * undefined when no buffered copy hides memory there.
   */
  buffered(address: number): number | undefined {
    const slot = this.slotOf(address);
    return slot < 0 ? undefined : this.copies[slot * DWORDS + ((address % LINE) >>> 2)]! >>> 0;
  }

  /** The slot of a live copy of `address`'s line, or -1. */
  private slotOf(address: number): number {
    const line = Math.floor(address / LINE);
    const slot = line & (WRITE_BUFFER_LINES - 1);
    if (this.tag[slot] !== line + 1 || this.generation[slot] !== this.current) return -1;
    if (this.now() - this.taken[slot]! > this.drainMs) {
      this.tag[slot] = 0;
      return -1;
    }
    return slot;
  }

  private remember(address: number): void {
    const line = Math.floor(address / LINE);
    const slot = line & (WRITE_BUFFER_LINES - 1);
    const start = line * LINE;
    const base = slot * DWORDS;
    for (let i = 0; i < DWORDS; i++) {
      const value = super.read32(start + 4 * i);
      if (value < 0) return; // part of the line is not RAM: keep nothing
      this.copies[base + i] = value | 0;
    }
    this.tag[slot] = line + 1;
    this.generation[slot] = this.current;
    this.taken[slot] = this.now();
  }
}
