/**
 * A domain's IOVA space: free ranges kept sorted and merged; allocation is first fit from the
 * bottom (small IOVAs suit devices with narrow DMA masks), aligned to the size rounded up to a
 * power of two (up to 1 GiB) so a buffer can use superpages when its physical address allows.
 * Explicitly mapped ranges are reserved so allocations never land on them.
 */
import { PAGE_SIZE } from "../spec/entries.ts";
import { hex, VtdDriverError } from "./errors.ts";

const LARGEST_ALIGNMENT = 2 ** 30;

interface Range {
  start: number;
  end: number;
}

export class IovaAllocator {
  /** Free ranges, sorted, disjoint, never adjacent. */
  private readonly free: Range[];

  constructor(readonly start: number, readonly end: number) {
    if (start % PAGE_SIZE !== 0 || end % PAGE_SIZE !== 0 || end <= start) throw new RangeError(`IovaAllocator: bad range ${hex(start)}..${hex(end)}`);
    this.free = [{ start, end }];
  }

  /** A free range of `size` bytes below `limit` (a DMA mask + 1). */
  allocate(size: number, limit = this.end): number {
    let alignment = PAGE_SIZE;
    while (alignment < size && alignment < LARGEST_ALIGNMENT) alignment *= 2;
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      const at = Math.ceil(r.start / alignment) * alignment;
      if (at + size > limit) break;
      if (at + size <= r.end) {
        this.take(i, at, at + size);
        return at;
      }
    }
    throw new VtdDriverError("out-of-space", `no free IOVA range of ${size} bytes below ${hex(limit)}`);
  }

  /** Returns [iova, iova + size) to the free space. */
  release(iova: number, size: number): void {
    const end = iova + size;
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid]!.start < iova) lo = mid + 1;
      else hi = mid;
    }
    const before = this.free[lo - 1];
    const after = this.free[lo];
    if ((before && before.end > iova) || (after && after.start < end)) {
      throw new Error(`IovaAllocator: ${hex(iova)}+${hex(size)} released twice`);
    }
    if (before && before.end === iova) {
      before.end = end;
      if (after && after.start === end) {
        before.end = after.end;
        this.free.splice(lo, 1);
      }
    } else if (after && after.start === end) {
      after.start = iova;
    } else {
      this.free.splice(lo, 0, { start: iova, end });
    }
  }

  /** Returns the part of [iova, iova + size) inside this allocator's span (for explicit mappings). */
  releaseWithin(iova: number, size: number): void {
    const s = Math.max(iova, this.start), e = Math.min(iova + size, this.end);
    if (s < e) this.release(s, e - s);
  }

  /** Takes [iova, iova + size) out of the free space wherever it is free (explicit mappings). */
  reserve(iova: number, size: number): void {
    const end = iova + size;
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      if (r.end <= iova) continue;
      if (r.start >= end) break;
      const s = Math.max(r.start, iova), e = Math.min(r.end, end);
      this.take(i, s, e);
      i--;
    }
  }

  /** True when all of [iova, iova + size) is free. */
  isFree(iova: number, size: number): boolean {
    return this.free.some((r) => r.start <= iova && r.end >= iova + size);
  }

  get freeBytes(): number {
    return this.free.reduce((sum, r) => sum + (r.end - r.start), 0);
  }

  private take(i: number, s: number, e: number): void {
    const r = this.free[i]!;
    const pieces: Range[] = [];
    if (r.start < s) pieces.push({ start: r.start, end: s });
    if (e < r.end) pieces.push({ start: e, end: r.end });
    this.free.splice(i, 1, ...pieces);
  }
}
