/**
 * The flush queue of lazy unmapping (the 2008 Linux patch: a high-water mark of 250 entries or
 * 10 ms): unmapped ranges wait here, their IOVAs still reserved, until one flush invalidates
 * them all; only then are the IOVAs freed for reuse. Until the flush a device may still reach
 * an unmapped buffer through a cached translation: the price of batching.
 */
import type { Clock } from "./platform.ts";

export interface FlushQueueEntry {
  did: number;
  iova: number;
  length: number;
  /** Only leaf entries changed (the invalidation may set IH). */
  leafOnly: boolean;
  /** Frees the IOVA; called after the flush completed. */
  release: () => void;
}

export class FlushQueue {
  private entries: FlushQueueEntry[] = [];
  private cancelTimer: (() => void) | undefined;
  private readonly inFlight = new Set<FlushQueueEntry[]>();

  constructor(
    private readonly clock: Clock,
    readonly highWater: number,
    readonly timeoutMs: number,
    /** Invalidates the entries and waits (polling). */
    private readonly invalidate: (entries: readonly FlushQueueEntry[]) => void,
    /** Invalidates the entries; resolves when done. */
    private readonly invalidateAsync: (entries: readonly FlushQueueEntry[]) => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  get length(): number {
    return this.entries.length;
  }

  add(entry: FlushQueueEntry): void {
    this.entries.push(entry);
    if (this.entries.length >= this.highWater) {
      this.flush();
    } else if (!this.cancelTimer) {
      this.cancelTimer = this.clock.after(this.timeoutMs, () => {
        this.cancelTimer = undefined;
        this.flushAsync().catch(this.onError);
      });
    }
  }

  /** True when [iova, iova + length) of domain `did` waits here or in a flush still in flight. */
  overlaps(did: number, iova: number, length: number): boolean {
    const hit = (e: FlushQueueEntry) => e.did === did && e.iova < iova + length && iova < e.iova + e.length;
    if (this.entries.some(hit)) return true;
    for (const batch of this.inFlight) if (batch.some(hit)) return true;
    return false;
  }

  /** Invalidates everything queued now and frees the IOVAs. */
  flush(): void {
    const batch = this.take();
    if (batch.length === 0) return;
    this.invalidate(batch);
    for (const e of batch) e.release();
  }

  flushAsync(): Promise<void> {
    const batch = this.take();
    if (batch.length === 0) return Promise.resolve();
    this.inFlight.add(batch);
    return this.invalidateAsync(batch).then(
      () => {
        this.inFlight.delete(batch);
        for (const e of batch) e.release();
      },
      (error: unknown) => {
        // The IOVAs stay reserved: reusing them without a completed invalidation is unsafe.
        this.inFlight.delete(batch);
        throw error;
      },
    );
  }

  get pendingInFlight(): number {
    return this.inFlight.size;
  }

  private take(): FlushQueueEntry[] {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const batch = this.entries;
    this.entries = [];
    return batch;
  }
}
