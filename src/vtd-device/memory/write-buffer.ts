/**
 * The write buffer of a unit reporting CAP.RWBF = 1 (VT-d §6.8): the unit's table reads do not
 * see the CPU's latest stores until software flushes the write buffer (GCMD.WBF), or an
 * invalidation completes (register or queued: the unit flushes implicitly before reporting it,
 * VT-d §11.4.4.1, §6.5), or SRTP / TE act, or `drainMs` of unit time have passed.
 *
 * How the unit learns of guest writes without a hook in the CPU: line copies (line-copies.ts).
 * A store to a line the unit has read (a table entry it walked, present or not) stays invisible
 * until a flush; a store to a line it never read is seen at once (as a real buffer that already
 * drained). A driver that forgets the flush after changing an entry the unit walked, and then
 * uses it, meets the old entry: a fault, or the old translation.
 *
 * Only table reads (root, context, paging entries, IRTEs) go through it; DMA data, queue fetches
 * and the unit's own writes do not. A snapshot does not hold it: reset and restore flush it (the
 * guest's memory is what it is after a restore).
 */
import type { GuestMemory } from "./guest-memory.ts";
import { LineCopies, LINE_COPIES } from "./line-copies.ts";
import { MemoryAccess } from "./memory-access.ts";

/** Lines remembered at most. */
export const WRITE_BUFFER_LINES = LINE_COPIES;

export class WriteBufferAccess extends LineCopies {
  /** Flushes done (GCMD.WBF and the implicit ones). */
  flushes = 0;

  constructor(memory: GuestMemory, drainMs: number, now: () => number) {
    super(memory, new MemoryAccess(memory), drainMs, now);
  }

  /** Everything buffered becomes visible. */
  flush(): void {
    this.flushes++;
    this.dropAll();
  }
}
