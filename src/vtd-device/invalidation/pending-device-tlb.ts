/**
 * Device-TLB invalidations sent to endpoints and not yet answered (VT-d §6.5.2.5, §6.5.2.10),
 * in the order they fall due: a binary min-heap on (due time, order sent) over fixed typed
 * arrays. Adding one and settling the next due cost O(log n) with n at most `limit`; nothing
 * is scanned or spliced, nothing allocated after construction. (With the usual fixed latency
 * they fall due in the order sent; the heap also keeps time order when an embedder changes
 * `deviceIotlbLatencyMs` while some are outstanding.)
 *
 * `limit` (`deviceIotlbPendingInvalidations`) is the unit's invalidation-request tracking
 * resources: when every place is taken the queue does not fetch the next device-TLB descriptor
 * until an answer or a time-out frees one, as hardware stalls on its outstanding-request limit
 * (PCIe ATS bounds them too: 32 ITags per endpoint).
 */
export class PendingDeviceTlbInvalidations {
  readonly limit: number;
  length = 0;
  /** Slot numbers, a min-heap on (due, order). */
  private readonly heap: Int32Array;
  /** Free slots (a stack). */
  private readonly free: Int32Array;
  private freeCount: number;
  private readonly sid: Int32Array;
  private readonly start: Float64Array;
  private readonly end: Float64Array;
  private readonly due: Float64Array;
  private readonly order: Float64Array;
  private readonly timesOut: Uint8Array;
  private sent = 0;

  constructor(limit: number) {
    this.limit = limit;
    this.heap = new Int32Array(limit);
    this.free = new Int32Array(limit);
    this.sid = new Int32Array(limit);
    this.start = new Float64Array(limit);
    this.end = new Float64Array(limit);
    this.due = new Float64Array(limit);
    this.order = new Float64Array(limit);
    this.timesOut = new Uint8Array(limit);
    this.freeCount = 0;
    this.clear();
  }

  get full(): boolean {
    return this.length === this.limit;
  }

  /**
   * Records an invalidation of [start, end) sent to `sid`, answered at `due` (or, with
   * `timesOut`, never answered: it times out at `due`). The caller checks `full` first.
   */
  push(sid: number, start: number, end: number, due: number, timesOut: boolean): void {
    if (this.length === this.limit) return;
    const slot = this.free[--this.freeCount]!;
    this.sid[slot] = sid;
    this.start[slot] = start;
    this.end[slot] = end;
    this.due[slot] = due;
    this.order[slot] = this.sent++;
    this.timesOut[slot] = timesOut ? 1 : 0;
    let at = this.length++;
    // Sift up.
    while (at > 0) {
      const parent = (at - 1) >> 1;
      const above = this.heap[parent]!;
      if (!this.before(slot, above)) break;
      this.heap[at] = above;
      at = parent;
    }
    this.heap[at] = slot;
  }

  private before(a: number, b: number): boolean {
    const da = this.due[a]!, db = this.due[b]!;
    return da < db || (da === db && this.order[a]! < this.order[b]!);
  }

  /** When the next one falls due; Infinity when none is outstanding. */
  get nextDue(): number {
    return this.length === 0 ? Infinity : this.due[this.heap[0]!]!;
  }

  // The next one's fields, valid while `length > 0`.
  get nextSid(): number {
    return this.sid[this.heap[0]!]!;
  }
  get nextStart(): number {
    return this.start[this.heap[0]!]!;
  }
  get nextEnd(): number {
    return this.end[this.heap[0]!]!;
  }
  get nextTimesOut(): boolean {
    return this.timesOut[this.heap[0]!] === 1;
  }

  /** Removes the next one. */
  shift(): void {
    if (this.length === 0) return;
    this.free[this.freeCount++] = this.heap[0]!;
    const last = this.heap[--this.length]!;
    if (this.length === 0) return;
    // Sift `last` down from the root.
    let at = 0;
    const n = this.length;
    while (true) {
      let child = 2 * at + 1;
      if (child >= n) break;
      if (child + 1 < n && this.before(this.heap[child + 1]!, this.heap[child]!)) child++;
      if (!this.before(this.heap[child]!, last)) break;
      this.heap[at] = this.heap[child]!;
      at = child;
    }
    this.heap[at] = last;
  }

  clear(): void {
    this.length = 0;
    this.sent = 0;
    for (let i = 0; i < this.limit; i++) this.free[i] = this.limit - 1 - i;
    this.freeCount = this.limit;
  }
}
