/**
 * What a deferred-flush scope collects (the remedy proposed for the Xen hvmloader relocation,
 * which flushed per 4 KiB page): invalidation requests, IOTLB ranges per domain (touching ranges
 * merged, so page-by-page work becomes one invalidation), a pending write-buffer flush, and the
 * IOVAs to free once the scope's single flush has completed.
 */
import type { Domain } from "./domain.ts";
import type { InvalidationRequest } from "./invalidation.ts";

interface PendingRange {
  start: number;
  end: number;
  /** Only leaf entries changed in all of it (IH may be set). */
  leafOnly: boolean;
  /** An unmap: endpoints' device-TLBs are invalidated too. */
  deviceTlb: boolean;
}

interface PendingRelease {
  did: number;
  start: number;
  end: number;
  release: () => void;
}

export class DeferredFlush {
  private depth = 0;
  private requests: InvalidationRequest[] = [];
  private ranges = new Map<Domain, PendingRange[]>();
  private releases: PendingRelease[] = [];
  writeBufferFlush = false;

  get active(): boolean {
    return this.depth > 0;
  }

  enter(): void {
    this.depth++;
  }

  /** Leaves a scope; true when it was the outermost one (time to flush). */
  leave(): boolean {
    this.depth--;
    return this.depth === 0;
  }

  addRequests(requests: readonly InvalidationRequest[]): void {
    this.requests.push(...requests);
  }

  /** Records a range, merged with the domain's previous one when they touch or overlap. */
  addRange(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): void {
    let list = this.ranges.get(domain);
    if (!list) this.ranges.set(domain, (list = []));
    const last = list[list.length - 1];
    const end = start + length;
    if (last && last.deviceTlb === deviceTlb && last.start <= end && start <= last.end) {
      last.start = Math.min(last.start, start);
      last.end = Math.max(last.end, end);
      last.leafOnly = last.leafOnly && leafOnly;
    } else {
      list.push({ start, end, leafOnly, deviceTlb });
    }
  }

  addRelease(did: number, start: number, length: number, release: () => void): void {
    this.releases.push({ did, start, end: start + length, release });
  }

  /** True when [iova, iova + length) of domain `did` was unmapped in the scope and is not yet invalidated. */
  freedInScope(did: number, iova: number, length: number): boolean {
    return this.releases.some((r) => r.did === did && r.start < iova + length && iova < r.end);
  }

  /**
   * Everything collected so far, emptied: the requests (ranges turned into requests by
   * `rangeRequests`), whether a write-buffer flush is due, and a function freeing the IOVAs.
   */
  take(rangeRequests: (domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean) => InvalidationRequest[]):
    { requests: InvalidationRequest[]; writeBufferFlush: boolean; release: () => void } {
    const requests = this.requests;
    for (const [domain, list] of this.ranges) {
      for (const r of list) requests.push(...rangeRequests(domain, r.start, r.end - r.start, r.leafOnly, r.deviceTlb));
    }
    const releases = this.releases;
    const writeBufferFlush = this.writeBufferFlush;
    this.requests = [];
    this.ranges = new Map();
    this.releases = [];
    this.writeBufferFlush = false;
    return { requests, writeBufferFlush, release: () => releases.forEach((r) => r.release()) };
  }
}
