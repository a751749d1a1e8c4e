/**
 * Queued invalidation (VT-d §6.5.2): the invalidation queue registers IQA/IQH/IQT, descriptor
 * fetch, device-TLB invalidations that take time at the endpoint, and the queue errors IQE and
 * ITE. What each descriptor does is in descriptor-execution.ts.
 *
 * Time is the unit's own clock, moved by `advanceTime`. With the default options every tail
 * write processes the queue to the end at once; with `queueDescriptorTimeMs` each descriptor
 * takes that long, and a wait behind a slow device-TLB invalidation completes only when the
 * endpoint has answered.
 *
 * Host work per guest action is bounded: a tail write fetches at most one queue's worth of
 * descriptors (fewer than 2^(QS+8) ≤ 32768), each executed without allocation; an outstanding
 * device-TLB invalidation costs O(log n) to record and to settle (pending-device-tlb.ts), and the
 * device-TLB work it does is bounded by `deviceIotlbEntriesPerEndpoint` (caches/device-tlb.ts).
 */
import { InvalidationQueueError } from "../../spec/descriptors.ts";
import { Fsts, Gsts, Ics, Reg } from "../../spec/registers.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import type { DeviceTlbs } from "../caches/device-tlb.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { InterruptEvent } from "../faults/interrupt-event.ts";
import type { Invalidation } from "./cache-invalidation.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { ResolvedOptions } from "../options.ts";
import type { RegisterFile } from "../registers/register-file.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import { BLOCKED, CLOCK_LIMIT_MS, DescriptorExecution, DONE } from "./descriptor-execution.ts";
import { PendingDeviceTlbInvalidations, type PendingDeviceTlbState } from "./pending-device-tlb.ts";
import type { Section } from "../state/codec.ts";
import { WideDescriptorExecution } from "../scalable/wide-descriptors.ts";

/** The queue's latched and internal state as a snapshot holds it (the registers hold the rest). */
export interface InvalidationQueueState {
  now: number;
  base: number;
  entries: number;
  head: number;
  disableRequested: boolean;
  nextFetchAt: number;
  paused: boolean;
  pending: PendingDeviceTlbState;
}

const QIES = Number(Gsts.QIES);
const IQE = Number(Fsts.IQE);
const ITE = Number(Fsts.ITE);
const IWC = Number(Ics.IWC);

export class InvalidationQueue {
  /** The unit's clock (ms): finite, never decreasing, at most CLOCK_LIMIT_MS. */
  now = 0;
  private base = 0;
  private entries = 256;
  private head = 0;
  private disableRequested = false;
  /** Time at which the next descriptor may be fetched (stepped processing only). */
  private nextFetchAt = 0;
  private readonly pending: PendingDeviceTlbInvalidations;
  /** Executes each fetched descriptor (the device gives it the interrupt entry cache). */
  readonly executor: DescriptorExecution;
  /** 256-bit descriptors (IQA.DW = 1), offered in scalable mode only. */
  readonly wideExecutor: WideDescriptorExecution | undefined;

  /** The work budget ran out with descriptors left: the next clock step goes on with them. */
  private paused = false;
  /** A pass over the queue is running (guards against re-entry from host callbacks). */
  private processing = false;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly regs: RegisterFile,
    private readonly memory: MemoryAccess,
    invalidation: Invalidation,
    private readonly faults: FaultRecording,
    private readonly completionEvent: InterruptEvent,
    private readonly deviceTlbs: DeviceTlbs,
    private readonly tracer: Tracer,
    private readonly stats: DeviceStats,
    private readonly cfg: WalkConfig,
    /** Host work done so far by invalidations (caches visited, notifier walks and events): the queue's budget reads it. */
    private readonly workDone: () => number = () => 0,
  ) {
    this.pending = new PendingDeviceTlbInvalidations(options.deviceIotlbPendingInvalidations);
    this.executor = new DescriptorExecution(options, regs, memory, invalidation, completionEvent, this.pending, this, tracer, stats, cfg);
    this.wideExecutor = options.scalableMode ? new WideDescriptorExecution(this.executor, tracer) : undefined;
  }

  reset(): void {
    this.paused = false;
    this.now = 0;
    this.head = 0;
    this.disableRequested = false;
    this.nextFetchAt = 0;
    this.pending.clear();
  }

  get enabled(): boolean {
    return (this.regs.get32(Reg.GSTS) & QIES) !== 0;
  }

  /** Device-TLB invalidations sent and not yet answered. */
  get pendingDeviceTlbInvalidations(): number {
    return this.pending.length;
  }

  /** GCMD.QIE set: IQA is latched, QIES set, and a tail already written is processed (VT-d §6.5.2). */
  enable(): void {
    this.disableRequested = false;
    const iqa = this.regs.get32(Reg.IQA);
    this.base = this.cfg.entryMasks.address(iqa, this.regs.get32(Reg.IQA + 4));
    const qs = iqa & 7;
    const dw = (iqa >>> 11) & 1;
    this.entries = 2 ** (qs + 8 - dw);
    this.head = 0;
    this.setHead();
    this.regs.update32(Reg.GSTS, QIES, 0);
    this.nextFetchAt = this.now;
    this.process();
  }

  /** GCMD.QIE set again while a disable waits for the queue to go idle: the guest's last word wins. */
  cancelDisable(): void {
    this.disableRequested = false;
  }

  /** GCMD.QIE clear: honoured once the queue is idle (head = tail, nothing outstanding). */
  disable(): void {
    this.disableRequested = true;
    this.completeDisableIfIdle();
  }

  private completeDisableIfIdle(): void {
    if (!this.disableRequested || !this.enabled) return;
    if (this.head !== this.tailIndex() || this.pending.length > 0) return;
    this.disableRequested = false;
    this.regs.update32(Reg.GSTS, 0, QIES);
    this.head = 0;
    this.setHead();
  }

  private get dw(): number {
    return (this.regs.get32(Reg.IQA) >>> 11) & 1;
  }

  /** 1 while 256-bit descriptors are in use (IQA.DW = 1 on a unit offering scalable mode), else 0. */
  private get wide(): number {
    return this.wideExecutor ? this.dw : 0;
  }

  private tailIndex(): number {
    const wide = this.wide;
    return (this.regs.get32(Reg.IQT) >>> (4 + wide)) & (0x7fff >>> wide);
  }

  private setHead(): void {
    this.regs.set32(Reg.IQH, (this.head << (4 + this.wide)) >>> 0);
    this.regs.set32(Reg.IQH + 4, 0);
  }

  onTailWrite(): void {
    this.nextFetchAt = Math.max(this.nextFetchAt, this.now);
    this.process();
  }

  /** ICS written: clearing IWC withdraws a pending completion interrupt (VT-d §6.5.2.7). */
  onCompletionStatusWrite(): void {
    if ((this.regs.get32(Reg.ICS) & IWC) === 0) this.completionEvent.clearPending();
  }

  /**
   * Moves the clock `ms` forward. Not a positive number (NaN, ≤ 0): nothing happens. The clock
   * saturates at CLOCK_LIMIT_MS (2^50 ms, about 35,700 years), so Infinity or a huge step moves
   * it there and lets everything due by then happen; it stays finite and exact to a quarter of
   * a millisecond, and later steps still run the queue. Each iteration settles or fetches at
   * least one thing, so the loop is bounded by the work outstanding.
   */
  advanceTime(ms: number): void {
    if (!(ms > 0)) return;
    const until = Math.min(this.now + ms, CLOCK_LIMIT_MS);
    // Visit every moment something happens in (now, until], in order.
    while (true) {
      const next = this.paused ? this.now : this.nextEventTime();
      if (next > until) break;
      this.now = Math.max(this.now, next);
      this.settleDeviceTlb();
      this.process();
      if (this.paused || this.nextEventTime() <= this.now) break; // one budget per instant
    }
    this.now = until;
    this.settleDeviceTlb();
    this.process();
  }

  private nextEventTime(): number {
    let next = this.pending.nextDue;
    if (this.options.queueDescriptorTimeMs > 0 && this.enabled && this.head !== this.tailIndex()) next = Math.min(next, this.nextFetchAt);
    return next;
  }

  /** Endpoints that answered drop their translations; one that never answers in time raises ITE. O(log n) each. */
  private settleDeviceTlb(): void {
    const pending = this.pending;
    while (pending.length > 0 && pending.nextDue <= this.now) {
      const sid = pending.nextSid;
      if (pending.nextTimesOut) {
        pending.shift();
        this.timeOut(sid);
      } else {
        this.deviceTlbs.invalidate(sid, pending.nextStart, pending.nextEnd);
        pending.shift();
      }
    }
    this.completeDisableIfIdle();
  }

  /**
   * ITE (VT-d §6.5.2.10): the waits that were pending are aborted, the head stays where it is, and
   * fetching stops until software clears ITE and writes the tail again. IQERCD.ITESID (bits 47:32)
   * names the endpoint when ITE was clear (VT-d §11.4.9.9).
   */
  private timeOut(sid: number): void {
    this.deviceTlbs.invalidate(sid, 0, 2 ** 64);
    if ((this.regs.get32(Reg.FSTS) & ITE) === 0) this.regs.set32(Reg.IQERCD + 4, (this.regs.get32(Reg.IQERCD + 4) & 0xffff_0000) | sid);
    if (this.tracer.active) this.error("ITE", `device-TLB invalidation of ${sid.toString(16)} not answered within ${this.options.deviceIotlbTimeoutMs} ms`);
    this.faults.raise(Fsts.ITE);
  }

  /**
   * Fetches and executes descriptors while the spec allows (VT-d §6.5.2: QIES, QH ≠ QT, no
   * IQE/ITE). One call fetches fewer than one queue's worth: the head never passes the tail.
   */
  private process(): void {
    // A host callback inside a descriptor (an onInterrupt that writes IQT) must not run the queue
    // again from the same head: the running pass re-reads the tail on every turn.
    if (this.processing) return;
    this.processing = true;
    try {
      this.fetchAndExecute();
    } finally {
      this.processing = false;
    }
  }

  private fetchAndExecute(): void {
    const stepped = this.options.queueDescriptorTimeMs > 0;
    const budget = this.options.queueWorkBudget;
    const start = this.workDone();
    let descriptors = 0;
    this.paused = false;
    while (this.enabled) {
      if (this.regs.get32(Reg.FSTS) & (IQE | ITE)) return;
      const tail = this.tailIndex();
      const wide = this.wide;
      if (this.dw === 1 && !wide) return this.queueError(InvalidationQueueError.InvalidWidth, "IQA.DW = 1 needs scalable mode, which this unit does not offer");
      // 256-bit descriptors: IQT bit 4 must be 0 (VT-d §11.4.9.2).
      if (wide && (this.regs.get32(Reg.IQT) & 0x10) !== 0) return this.queueError(InvalidationQueueError.InvalidTail, "IQT bit 4 set with 256-bit descriptors");
      if (tail >= this.entries) return this.queueError(InvalidationQueueError.InvalidTail, `tail ${tail} beyond a queue of ${this.entries} descriptors`);
      if (this.head === tail) break;
      if (descriptors + this.workDone() - start >= budget) {
        // Past the budget with descriptors left: they wait for the clock or the next tail write.
        this.paused = true;
        this.stats.queueBudgetPauses++;
        return;
      }
      if (stepped && this.now < this.nextFetchAt) return;
      const at = this.base + this.head * (16 << wide);
      const w0 = this.memory.read32(at), w1 = this.memory.read32(at + 4), w2 = this.memory.read32(at + 8), w3 = this.memory.read32(at + 12);
      if (w0 < 0 || w1 < 0 || w2 < 0 || w3 < 0) return this.queueError(InvalidationQueueError.FetchError, `descriptor at ${at.toString(16)} is outside RAM`);
      const outcome = wide ? this.executeWide(at, w0, w1, w2, w3) : this.executor.execute(this.head, w0, w1, w2, w3);
      if (outcome === BLOCKED) return;
      if (outcome !== DONE) return this.queueError(outcome, wide ? this.wideExecutor!.why : this.executor.why);
      this.stats.descriptorsProcessed++;
      descriptors++;
      this.head = (this.head + 1) % this.entries;
      this.setHead();
      if (this.pending.nextDue <= this.now) this.settleDeviceTlb(); // an endpoint that answers at once
      if (stepped) this.nextFetchAt = Math.max(this.nextFetchAt, this.now) + this.options.queueDescriptorTimeMs;
    }
    this.completeDisableIfIdle();
  }

  /** A 256-bit descriptor: its upper four dwords fetched too (scalable/wide-descriptors.ts). */
  private executeWide(at: number, w0: number, w1: number, w2: number, w3: number): number {
    const w4 = this.memory.read32(at + 16), w5 = this.memory.read32(at + 20), w6 = this.memory.read32(at + 24), w7 = this.memory.read32(at + 28);
    if (w4 < 0 || w5 < 0 || w6 < 0 || w7 < 0) {
      this.wideExecutor!.why = `descriptor at ${at.toString(16)} is outside RAM`;
      return InvalidationQueueError.FetchError;
    }
    return this.wideExecutor!.execute(this.head, w0, w1, w2, w3, w4, w5, w6, w7);
  }

  /** IQE (VT-d §6.5.2.10): the head stays on the bad descriptor; fetching stops until IQE is cleared and the tail written. */
  private queueError(code: InvalidationQueueError, why: string): void {
    this.regs.set32(Reg.IQERCD, code);
    this.error("IQE", why);
    this.faults.raise(Fsts.IQE);
  }

  private error(error: "IQE" | "ITE", why: string): void {
    if (this.tracer.active) this.tracer.emit({ type: "vtd_iq_error", error, head: this.head, why });
  }

  // ---- snapshot (state/) ----

  save(): InvalidationQueueState {
    return {
      now: this.now, base: this.base, entries: this.entries, head: this.head, disableRequested: this.disableRequested,
      nextFetchAt: this.nextFetchAt, paused: this.paused, pending: this.pending.save(),
    };
  }

  /** Checks a saved queue state (the clock, the latched IQA, the head, the outstanding device-TLB work); touches nothing. */
  decode(s: Section): InvalidationQueueState {
    const entries = s.int("entries", 128, 32768);
    if ((entries & (entries - 1)) !== 0) s.fail(`entries: ${entries} is not a power of two`);
    const base = s.int("base", 0, 2 ** this.cfg.awBits - 4096);
    if (base % 4096 !== 0) s.fail(`base: 0x${base.toString(16)} is not 4 KiB aligned`);
    return {
      now: s.number("now", 0, CLOCK_LIMIT_MS),
      base,
      entries,
      head: s.int("head", 0, entries - 1),
      disableRequested: s.bool("disableRequested"),
      nextFetchAt: s.number("nextFetchAt", 0, CLOCK_LIMIT_MS + 1000),
      paused: s.bool("paused"),
      pending: this.pending.decode(s.section("pending"), CLOCK_LIMIT_MS),
    };
  }

  load(state: InvalidationQueueState): void {
    this.now = state.now;
    this.base = state.base;
    this.entries = state.entries;
    this.head = state.head;
    this.disableRequested = state.disableRequested;
    this.nextFetchAt = state.nextFetchAt;
    this.paused = state.paused;
    this.pending.load(state.pending);
  }
}
