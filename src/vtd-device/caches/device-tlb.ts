/**
 * Device-TLBs (ATS address translation caches) of the endpoints behind the unit, one per
 * requester id (VT-d §4, §6.5.2.5). An endpoint whose context entry has TT = 1 keeps the
 * translations it was given here and uses them without asking the unit again, until a
 * device-TLB invalidation reaches it: that is what makes such invalidations slow and their
 * completion worth waiting for.
 */
interface CachedTranslation {
  pageOutput: number;
  permission: number;
}

export class DeviceTlbs {
  private readonly bySid = new Map<number, Map<number, CachedTranslation>>();

  lookup(sid: number, address: number): CachedTranslation | undefined {
    return this.bySid.get(sid)?.get(Math.floor(address / 4096));
  }

  fill(sid: number, address: number, pageOutput: number, permission: number): void {
    let cache = this.bySid.get(sid);
    if (!cache) this.bySid.set(sid, (cache = new Map()));
    cache.set(Math.floor(address / 4096), { pageOutput, permission });
  }

  /** Drops the endpoint's entries in [start, end). */
  invalidate(sid: number, start: number, end: number): number {
    const cache = this.bySid.get(sid);
    if (!cache) return 0;
    let dropped = 0;
    for (const page of cache.keys()) {
      if (page * 4096 >= start && page * 4096 < end) { cache.delete(page); dropped++; }
    }
    return dropped;
  }

  entries(sid: number): number {
    return this.bySid.get(sid)?.size ?? 0;
  }

  clear(): void {
    this.bySid.clear();
  }
}

/**
 * The range a device-TLB invalidation names (PCIe ATS §3.1.2): with S = 0 one 4 KiB page; with
 * S = 1 the lowest clear address bit from bit 12 up gives the size, 2^(13 + number of set bits below it).
 */
export function deviceTlbRange(address: number, sizeBit: boolean): { start: number; end: number } {
  if (!sizeBit) {
    const start = address - (address % 4096);
    return { start, end: start + 4096 };
  }
  let size = 8192;
  while (size <= 2 ** 63 && Math.floor(address / (size / 2)) % 2 === 1) size *= 2;
  if (size > 2 ** 63) return { start: 0, end: 2 ** 64 };
  const start = address - (address % size);
  return { start, end: start + size };
}
