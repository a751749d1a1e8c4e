/**
 * CPU caches the unit does not snoop (ECAP.C = 0, VT-d §3.9 / §6.4): the unit's table reads see
 * memory, and a table entry the CPU stored reaches memory when software writes its line back
 * (CLFLUSH / CLFLUSHOPT), not before. Used when the platform reports the guest's cache-line
 * flushes (option `cacheLineFlushes`, `VtdDevice.cacheLineFlushed`), as the v86 attachment does.
 *
 * Modelled with line copies (line-copies.ts): a line the unit has read keeps, for the unit, the
 * bytes it read until the guest flushes that line; so a driver that changes an entry the unit
 * walked and forgets the flush meets the old entry (a fault, or the old translation), however
 * many invalidations follow: invalidating the unit's caches does not write back the CPU's. A
 * line the unit never read is read from memory (as a line the CPU had already written back), and
 * a line evicted from the bounded store has reached memory. Reset and restore end every copy.
 */
import type { GuestMemory } from "./guest-memory.ts";
import { LineCopies } from "./line-copies.ts";
import type { MemoryAccess } from "./memory-access.ts";

export class CpuCacheAccess extends LineCopies {
  /** Cache-line flushes the platform reported. */
  lineFlushes = 0;
  /** Of those, the ones that ended a copy the unit held (a table line it had read). */
  tableLineFlushes = 0;

  constructor(memory: GuestMemory, source: MemoryAccess, now: () => number) {
    super(memory, source, Infinity, now);
  }

  /** The guest wrote back the line holding guest-physical `address`. */
  lineFlushed(address: number): void {
    this.lineFlushes++;
    if (this.dropLine(address)) this.tableLineFlushes++;
  }
}
