/**
 * How the driver's changes reach the unit: every invalidation it owes goes through here, and is
 * carried out at once (strict), collected by a deferred-flush scope (one submission when the scope
 * ends, touching ranges merged), or, for lazy unmaps, left in the flush queue. Also the write-buffer
 * flush (CM = 0 with CAP.RWBF), which a deferred scope likewise postpones.
 */
import type { DriverCounters } from "./counters.ts";
import { DeferredFlush } from "./deferred-flush.ts";
import type { UnitCapabilities } from "./discovery.ts";
import { RID_PASID, type Domain } from "./domain.ts";
import { hex, VtdDriverError } from "./errors.ts";
import { FlushQueue, type FlushQueueEntry } from "./flush-queue.ts";
import type { GlobalCommand } from "./global-command.ts";
import { deviceTlbEverything, deviceTlbRange, iotlbRange, pasidIotlbRange, type InvalidationRequest, type Invalidator } from "./invalidation.ts";
import type { DriverRule } from "./options.ts";
import type { Clock } from "./platform.ts";

export interface FlushQueueSettings {
  highWater: number;
  timeoutMs: number;
  granularity: "domain" | "page";
}

export class InvalidationSubmission {
  private invalidator!: Invalidator;
  private flushQueue: FlushQueue | undefined;
  private readonly deferred = new DeferredFlush();

  constructor(
    private readonly caps: UnitCapabilities,
    private readonly counters: DriverCounters,
    private readonly gcmd: GlobalCommand,
    private readonly keeps: (rule: DriverRule) => boolean,
    /** The driver's domains by DID (a flush-queue entry names its domain by DID). */
    private readonly domains: ReadonlyMap<number, Domain>,
  ) {}

  /** Initialisation chose how invalidations are carried out (queued or by register). */
  useInvalidator(invalidator: Invalidator): void {
    this.invalidator = invalidator;
  }

  /** Lazy mode: unmaps wait in a flush queue; errors of its timer-driven flushes go to `onError`. */
  startFlushQueue(clock: Clock, settings: FlushQueueSettings, onError: (error: unknown) => void): void {
    const { highWater, timeoutMs, granularity } = settings;
    this.flushQueue = new FlushQueue(clock, highWater, timeoutMs,
      (entries) => this.invalidator.run(this.flushRequests(entries, granularity)),
      (entries) => this.invalidator.runAsync(this.flushRequests(entries, granularity)),
      onError);
  }

  /** Runs a batch now and waits (polling), whatever scope is open. */
  run(requests: readonly InvalidationRequest[]): void {
    this.invalidator.run(requests);
  }

  runAsync(requests: readonly InvalidationRequest[]): Promise<void> {
    return this.invalidator.runAsync(requests);
  }

  /** Invalidates a range now, deferred-flush scope or not (the test-only naive superpage split). */
  runRange(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): void {
    this.invalidator.run(this.rangeRequests(domain, start, length, leafOnly, deviceTlb));
  }

  /** Invalidates a range, or adds it to the open deferred-flush scope. */
  invalidateRange(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): void {
    if (this.deferred.active) this.deferred.addRange(domain, start, length, leafOnly, deviceTlb);
    else this.run(this.rangeRequests(domain, start, length, leafOnly, deviceTlb));
  }

  /** Runs the requests, or adds them to the open deferred-flush scope. */
  invalidate(requests: InvalidationRequest[]): void {
    if (this.deferred.active) this.deferred.addRequests(requests);
    else this.run(requests);
  }

  writeBufferFlush(): void {
    if (!this.caps.rwbf || !this.keeps("write-buffer-flush")) return;
    if (this.deferred.active) this.deferred.writeBufferFlush = true;
    else this.gcmd.flushWriteBuffer();
  }

  /**
   * The invalidation of an unmapped range, then `release` (which frees its IOVA): in the open
   * deferred-flush scope, in the flush queue (lazy), or now (strict; `async`: by interrupt).
   */
  retire(domain: Domain, iova: number, length: number, leafOnly: boolean, release: () => void, async: boolean): Promise<void> | undefined {
    if (this.deferred.active) {
      this.deferred.addRange(domain, iova, length, leafOnly, true);
      this.deferred.addRelease(domain.did, iova, length, release);
      return undefined;
    }
    if (this.flushQueue && !async) {
      const reuseNow = !this.keeps("deferred-iova-reuse");
      this.flushQueue.add({ did: domain.did, iova, length, leafOnly, release: reuseNow ? () => {} : release });
      if (reuseNow) release();
      return undefined;
    }
    return this.runThenRelease(this.rangeRequests(domain, iova, length, leafOnly, true), release, async);
  }

  /** An IOVA about to be mapped again whose unmap is not invalidated yet (flush queue, deferred scope): flush first. */
  settlePendingUnmaps(domain: Domain, iova: number, length: number): void {
    if (this.deferred.active && this.deferred.freedInScope(domain.did, iova, length)) {
      this.runDeferred(false);
    }
    if (this.flushQueue?.overlaps(domain.did, iova, length)) {
      this.flushQueue.flush();
      if (this.flushQueue.overlaps(domain.did, iova, length)) {
        throw new VtdDriverError("overlap", `map ${hex(iova)}+${hex(length)}: an earlier unmap of it is still being invalidated asynchronously`);
      }
    }
  }

  /** See VtdDriver.deferFlush. */
  deferFlush<T>(work: () => T): T {
    this.deferred.enter();
    try {
      return work();
    } finally {
      // Even when `work` threw: what it changed must still be invalidated.
      if (this.deferred.leave()) this.runDeferred(false);
    }
  }

  async deferFlushAsync<T>(work: () => T): Promise<T> {
    this.deferred.enter();
    let result: T;
    try {
      result = work();
    } finally {
      if (this.deferred.leave()) await this.runDeferred(true);
    }
    return result;
  }

  flush(): void {
    this.flushQueue?.flush();
  }

  flushAsync(): Promise<void> {
    return this.flushQueue?.flushAsync() ?? Promise.resolve();
  }

  get pendingUnmaps(): number {
    return this.flushQueue?.length ?? 0;
  }

  /**
   * One IOTLB invalidation for the range (a first-stage domain's: PASID-based, VT-d §6.5.2.4; a
   * second-stage one's: the IOTLB descriptor, as Linux 6.1), and (for unmaps) one device-TLB
   * invalidation per ATS endpoint.
   */
  private rangeRequests(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): InvalidationRequest[] {
    const requests = [domain.stage === "first"
      ? pasidIotlbRange(this.caps, this.counters, domain.did, RID_PASID, start, length, leafOnly)
      : iotlbRange(this.caps, this.counters, domain.did, start, length, leafOnly)];
    if (deviceTlb) for (const sid of domain.deviceTlbDevices) requests.push(deviceTlbRange(sid, start, length));
    return requests;
  }

  private flushRequests(entries: readonly FlushQueueEntry[], granularity: "domain" | "page"): InvalidationRequest[] {
    const requests: InvalidationRequest[] = [];
    if (granularity === "domain") {
      for (const did of new Set(entries.map((e) => e.did))) {
        const domain = this.domains.get(did);
        requests.push(domain?.stage === "first" ? { kind: "pasid-iotlb", did, pasid: RID_PASID } : { kind: "iotlb-domain", did });
        if (domain) for (const sid of domain.deviceTlbDevices) requests.push(deviceTlbEverything(sid));
      }
    } else {
      for (const e of entries) {
        const domain = this.domains.get(e.did);
        if (domain) requests.push(...this.rangeRequests(domain, e.iova, e.length, e.leafOnly, true));
        else requests.push(iotlbRange(this.caps, this.counters, e.did, e.iova, e.length, e.leafOnly));
      }
    }
    this.counters.flushQueueFlushes++;
    return requests;
  }

  private runDeferred(async: boolean): Promise<void> | undefined {
    const { requests, writeBufferFlush, release } = this.deferred.take((domain, start, length, leafOnly, deviceTlb) =>
      this.rangeRequests(domain, start, length, leafOnly, deviceTlb));
    if (writeBufferFlush) this.gcmd.flushWriteBuffer();
    if (requests.length === 0) {
      release();
      return async ? Promise.resolve() : undefined;
    }
    return this.runThenRelease(requests, release, async);
  }

  /** Runs the batch and then frees: polling, or (`async`) when the Promise resolves. */
  private runThenRelease(requests: InvalidationRequest[], release: () => void, async: boolean): Promise<void> | undefined {
    if (async) return this.invalidator.runAsync(requests).then(release);
    this.invalidator.run(requests);
    release();
    return undefined;
  }
}
