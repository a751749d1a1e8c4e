import { describe, type Section } from "../state/codec.ts";

/**
 * Outstanding device-TLB invalidations as a snapshot holds them: in heap order, each
 * [sid, start, end, due, order sent, times out (0 or 1)], and how many were ever sent.
 */
export interface PendingDeviceTlbState {
  sent: number;
  entries: number[][];
}

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

  // ---- snapshot (state/) ----

  save(): PendingDeviceTlbState {
    const entries: number[][] = [];
    for (let i = 0; i < this.length; i++) {
      const slot = this.heap[i]!;
      entries.push([this.sid[slot]!, this.start[slot]!, this.end[slot]!, this.due[slot]!, this.order[slot]!, this.timesOut[slot]!]);
    }
    return { sent: this.sent, entries };
  }

  /** Checks saved outstanding invalidations (count, fields, heap order); returns them as a fresh list, touching nothing. */
  decode(s: Section, clockLimit: number): PendingDeviceTlbState {
    const sent = s.int("sent", 0, 2 ** 53);
    const list = s.array("entries");
    if (list.length > this.limit) s.fail(`entries: ${list.length} outstanding, more than this unit's ${this.limit} (deviceIotlbPendingInvalidations)`);
    const max = [0xffff, 2 ** 64, 2 ** 64, clockLimit, sent - 1, 1];
    const entries = list.map((entry, i) => {
      if (!Array.isArray(entry) || entry.length !== 6) s.fail(`entries[${i}]: expected [sid, start, end, due, order, timesOut], got ${describe(entry)}`);
      return entry.map((x, k) => {
        if (typeof x !== "number" || !Number.isFinite(x) || x < 0 || x > max[k]! || (k !== 1 && k !== 2 && k !== 3 && !Number.isInteger(x))) {
          s.fail(`entries[${i}][${k}]: expected a number in 0..${max[k]}, got ${describe(x)}`);
        }
        return x as number;
      });
    });
    const before = (a: number[], b: number[]) => a[3]! < b[3]! || (a[3] === b[3] && a[4]! < b[4]!);
    for (let i = 1; i < entries.length; i++) {
      if (before(entries[i]!, entries[(i - 1) >> 1]!)) s.fail(`entries[${i}]: out of heap order (falls due before its parent)`);
    }
    return { sent, entries };
  }

  load(state: PendingDeviceTlbState): void {
    this.clear();
    const n = state.entries.length;
    // Slots 0..n-1 hold them in heap order; the free stack keeps the rest, as `push` would leave it.
    for (let slot = 0; slot < n; slot++) {
      const [sid, start, end, due, order, timesOut] = state.entries[slot]!;
      this.sid[slot] = sid!;
      this.start[slot] = start!;
      this.end[slot] = end!;
      this.due[slot] = due!;
      this.order[slot] = order!;
      this.timesOut[slot] = timesOut!;
      this.heap[slot] = slot;
    }
    this.length = n;
    this.freeCount = this.limit - n;
    this.sent = state.sent;
  }
}
