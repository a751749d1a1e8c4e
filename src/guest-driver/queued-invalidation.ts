/**
 * Queued invalidation (VT-d §6.5.2): the driver's side of the invalidation queue.
 *
 * Every batch ends in an invalidation wait descriptor with a status write (SW = 1) of a unique
 * sequence number to its own status slot. A synchronous batch polls its slot, as Linux does;
 * an asynchronous one also sets IF = 1 and is completed by the invalidation completion interrupt
 * (clear ICS.IWC, then look at the slots), so a device-TLB invalidation that takes a minute
 * blocks no CPU. Queue errors (VT-d §6.5.2.10):
 * - IQE: the descriptor at IQH was rejected. It is overwritten with a fence-only wait, IQE is
 *   cleared, the queue restarted; the batch that held it fails with an error naming it.
 * - ITE: an endpoint did not answer a device-TLB invalidation in time; the unit aborted the
 *   pending waits. ITE is cleared, the queue restarted, and each aborted batch resubmitted
 *   (`iteRetries` times) before it fails.
 * - ICE: cleared and reported.
 */
import { Fsts, Gcmd, Gsts, Ics, Iqa, Reg } from "../spec/registers.ts";
import type { DriverCounters } from "./counters.ts";
import { encodeDescriptor, FENCE_ONLY_WAIT, waitLow } from "./descriptor-encoding.ts";
import type { UnitCapabilities } from "./discovery.ts";
import { bdf, VtdDriverError } from "./errors.ts";
import type { GlobalCommand } from "./global-command.ts";
import { countRequests, describeRequest, type InvalidationRequest, type Invalidator } from "./invalidation.ts";
import type { QueueErrorReport } from "./options.ts";
import type { Clock, MsiMessage, PageAllocator, PhysicalMemory } from "./platform.ts";
import { pollUntil } from "./poll.ts";
import type { UnitRegisters } from "./unit-registers.ts";

const b = (n: number) => BigInt(n);
const IQE = Number(Fsts.IQE), ITE = Number(Fsts.ITE), ICE = Number(Fsts.ICE);
const QUEUE_ERRORS = IQE | ITE | ICE;
const SLOT_BYTES = 4;
const SLOTS = 4096 / SLOT_BYTES;
const IQA_DW = 1n << b(Iqa.DW.shift);

/** IQERCD.IQEI values (VT-d §11.4.9.9). */
const IQEI_NAMES: Record<number, string> = {
  1: "invalid tail pointer", 2: "descriptor fetch error", 3: "invalid descriptor type",
  4: "reserved field set", 5: "invalid descriptor width", 6: "queue address above HAW", 7: "invalid TTM",
};

type State = "pending" | "done" | "failed" | "aborted";

interface Batch {
  requests: readonly InvalidationRequest[];
  async: boolean;
  seq: number;
  slot: number;
  /** Queue indices of its first descriptor and of its wait descriptor. */
  first: number;
  wait: number;
  state: State;
  attempts: number;
  error?: Error;
  resolve?: () => void;
  reject?: (error: Error) => void;
  cancelTimer?: () => void;
}

export interface QueueSettings {
  sizeOrder: number;
  /** IQA.DW = 1: 256-bit descriptors (scalable mode, VT-d §6.5.2); every descriptor then takes 32 bytes. */
  wide?: boolean;
  syncWaitTimeoutMs: number;
  registerTimeoutMs: number;
  iteRetries: number;
  mangleDescriptor?: (lo: bigint, hi: bigint) => [bigint, bigint];
  onQueueError?: (report: QueueErrorReport) => void;
}

export class QueuedInvalidation implements Invalidator {
  readonly kind = "queued";
  readonly base: number;
  readonly entries: number;
  /** 16, or 32 with 256-bit descriptors. */
  private readonly descriptorBytes: number;
  private tail = 0;
  private knownHead = 0;
  private readonly statusPage: number;
  private readonly freeSlots: number[] = [];
  private seq = 0;
  private readonly pending: Batch[] = [];
  private readonly toResubmit: Batch[] = [];
  private submitting = false;
  private servicing = false;

  constructor(
    private readonly regs: UnitRegisters,
    private readonly memory: PhysicalMemory,
    private readonly allocator: PageAllocator,
    private readonly clock: Clock,
    private readonly counters: DriverCounters,
    private readonly caps: UnitCapabilities,
    private readonly gcmd: GlobalCommand,
    private readonly settings: QueueSettings,
  ) {
    const largest = 2 ** Iqa.QS.width - 1;
    if (!Number.isInteger(settings.sizeOrder) || settings.sizeOrder < 0 || settings.sizeOrder > largest) {
      throw new VtdDriverError("bad-argument", `queueSizeOrder ${String(settings.sizeOrder)}: expected an integer 0..${largest} (IQA.QS)`);
    }
    this.descriptorBytes = settings.wide ? 32 : 16;
    this.entries = (4096 / this.descriptorBytes) * 2 ** settings.sizeOrder;
    this.base = allocator.allocatePages(2 ** settings.sizeOrder);
    this.statusPage = allocator.allocatePages(1);
    for (let i = SLOTS - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  /**
   * Enables the queue (VT-d §6.5.2): IQT = 0, IQA = base | DW | QS, GCMD.QIE, poll QIES.
   * Returns false (queue left disabled) if QIES never sets: the caller falls back to registers.
   */
  enable(): boolean {
    this.regs.write64(Reg.IQT, 0n);
    this.regs.write64(Reg.IQA, b(this.base) | (this.settings.wide ? IQA_DW : 0n) | b(this.settings.sizeOrder));
    this.tail = 0;
    this.knownHead = 0;
    try {
      this.gcmd.setPersistent(Gcmd.QIE, Gsts.QIES, true, "QIE");
      return true;
    } catch (error) {
      if (!(error instanceof VtdDriverError) || error.code !== "hardware-timeout") throw error;
      const persistent = this.gcmd.status() & 0x96ff_ffff;
      this.regs.write32(Reg.GCMD, (persistent & ~Number(Gcmd.QIE)) >>> 0);
      this.allocator.freePages(this.base, 2 ** this.settings.sizeOrder);
      this.allocator.freePages(this.statusPage, 1);
      return false;
    }
  }

  /** The invalidation completion event's message; unmasked. */
  programCompletionInterrupt(msi: MsiMessage): void {
    this.regs.programEvent({ control: Reg.IECTL, data: Reg.IEDATA, address: Reg.IEADDR, upperAddress: Reg.IEUADDR }, msi);
  }

  /** Invalidation completion interrupt: clear IWC first (a later completion interrupts again), then look. */
  onCompletionInterrupt(): void {
    this.regs.write32(Reg.ICS, Number(Ics.IWC));
    this.service();
  }

  /** Batches still waiting for the unit. */
  get outstanding(): number {
    return this.pending.length + this.toResubmit.length;
  }

  run(requests: readonly InvalidationRequest[]): void {
    countRequests(this.counters, requests);
    const batch = this.submit(requests, false, 1);
    this.counters.syncWaits++;
    pollUntil(this.clock, this.counters, this.settings.syncWaitTimeoutMs, () => {
      this.service();
      return batch.state === "done" || batch.state === "failed";
    }, `invalidation wait (${requests.length} descriptors)`);
    if (batch.state === "failed") throw batch.error!;
  }

  runAsync(requests: readonly InvalidationRequest[]): Promise<void> {
    countRequests(this.counters, requests);
    this.counters.asyncWaits++;
    return new Promise<void>((resolve, reject) => {
      const batch = this.submit(requests, true, 1);
      batch.resolve = resolve;
      batch.reject = reject;
      batch.cancelTimer = this.clock.after(this.settings.syncWaitTimeoutMs, () => {
        if (batch.state === "done" || batch.state === "failed") return;
        this.finish(batch, "failed", new VtdDriverError("hardware-timeout",
          `invalidation wait (${requests.length} descriptors) not completed within ${this.settings.syncWaitTimeoutMs} ms`));
      });
      // A batch the unit completed at once still reports through the interrupt; look now as well.
      this.service();
    });
  }

  /** Checks completions and queue errors. Safe to call at any time, from any path. */
  service(): void {
    if (this.servicing) return;
    this.servicing = true;
    try {
      this.checkCompletions();
      if (this.pending.length > 0 || this.toResubmit.length > 0) {
        // Still waiting: is the queue stopped by an error?
        const fsts = this.regs.read32(Reg.FSTS);
        if (fsts & QUEUE_ERRORS) {
          this.handleErrors(fsts);
          this.checkCompletions();
        }
      }
      if (!this.submitting) this.resubmitAborted();
    } finally {
      this.servicing = false;
    }
  }

  // ---- submission ----

  private slotAddress(slot: number): number {
    return this.statusPage + slot * SLOT_BYTES;
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffff_fffe ? 1 : this.seq + 1;
    return this.seq;
  }

  private submit(requests: readonly InvalidationRequest[], async: boolean, attempts: number): Batch {
    const slot = this.freeSlots.pop();
    if (slot === undefined) throw new VtdDriverError("out-of-space", `${SLOTS} invalidation waits outstanding: no status slot free`);
    const batch: Batch = { requests, async, seq: 0, slot, first: 0, wait: 0, state: "pending", attempts };
    this.write(batch);
    this.pending.push(batch);
    return batch;
  }

  /** Writes the batch's descriptors and its wait at the tail, then moves the tail. */
  private write(batch: Batch): void {
    this.submitting = true;
    try {
      batch.seq = this.nextSeq();
      batch.first = this.tail;
      for (const r of batch.requests) {
        const [lo, hi] = encodeDescriptor(r, this.caps);
        const [mlo, mhi] = this.settings.mangleDescriptor ? this.settings.mangleDescriptor(lo, hi) : [lo, hi];
        this.put(mlo, mhi, 2);
      }
      batch.wait = this.tail;
      this.put(waitLow(batch.seq, batch.async), b(this.slotAddress(batch.slot)), 1);
      this.regs.write32(Reg.IQT, this.tail * this.descriptorBytes);
      this.counters.queueSubmissions++;
    } finally {
      this.submitting = false;
    }
  }

  /** One descriptor at the tail; keeps one slot free and, if the ring is full, lets the unit catch up. */
  private put(lo: bigint, hi: bigint, needed: number): void {
    if (this.free() < needed) {
      this.knownHead = this.readHead();
      if (this.free() < needed) {
        // Hand over what is written so far and wait for room.
        this.regs.write32(Reg.IQT, this.tail * this.descriptorBytes);
        this.counters.queueSubmissions++;
        pollUntil(this.clock, this.counters, this.settings.syncWaitTimeoutMs, () => {
          const fsts = this.regs.read32(Reg.FSTS);
          if (fsts & QUEUE_ERRORS) this.handleErrors(fsts);
          this.knownHead = this.readHead();
          return this.free() >= needed;
        }, "room in the invalidation queue");
      }
    }
    const at = this.base + this.tail * this.descriptorBytes;
    this.memory.write64(at, lo);
    this.memory.write64(at + 8, hi);
    if (this.descriptorBytes === 32) {
      // Bits 255:128 of every descriptor the driver writes are zero.
      this.memory.write64(at + 16, 0n);
      this.memory.write64(at + 24, 0n);
    }
    this.tail = (this.tail + 1) % this.entries;
    this.counters.descriptorsSubmitted++;
  }

  private free(): number {
    return (this.knownHead - this.tail - 1 + this.entries) % this.entries;
  }

  private readHead(): number {
    // IQH holds the byte offset of the next descriptor (bits 18:4).
    return ((this.regs.read32(Reg.IQH) >>> 4) & 0x7fff) * 16 / this.descriptorBytes;
  }

  // ---- completion ----

  private checkCompletions(): void {
    for (let i = 0; i < this.pending.length; ) {
      const batch = this.pending[i]!;
      if (batch.state === "pending" && this.memory.read32(this.slotAddress(batch.slot)) === batch.seq) {
        this.finish(batch, "done");
      } else {
        i++;
      }
    }
  }

  private finish(batch: Batch, state: "done" | "failed", error?: Error): void {
    batch.state = state;
    batch.error = error;
    const i = this.pending.indexOf(batch);
    if (i >= 0) this.pending.splice(i, 1);
    const j = this.toResubmit.indexOf(batch);
    if (j >= 0) this.toResubmit.splice(j, 1);
    // The unit may still write the old sequence number there: harmless, numbers are never reused soon.
    this.freeSlots.push(batch.slot);
    batch.cancelTimer?.();
    if (state === "done") batch.resolve?.();
    else batch.reject?.(error!);
  }

  // ---- errors ----

  private contains(batch: Batch, index: number): boolean {
    if (batch.first <= batch.wait) return index >= batch.first && index <= batch.wait;
    return index >= batch.first || index <= batch.wait;
  }

  private handleErrors(fsts: number): void {
    const head = this.readHead();
    if (fsts & IQE) {
      const code = this.regs.read32(Reg.IQERCD) & 0xf;
      const batch = this.pending.find((p) => p.state === "pending" && this.contains(p, head));
      const offset = batch ? (head - batch.first + this.entries) % this.entries : -1;
      const what = batch && offset < batch.requests.length ? describeRequest(batch.requests[offset]!) : `descriptor ${head}`;
      // Repair: a fence-only wait in its place, then restart the queue past it.
      const at = this.base + head * this.descriptorBytes;
      this.memory.write64(at, FENCE_ONLY_WAIT);
      this.memory.write64(at + 8, 0n);
      this.regs.write32(Reg.FSTS, IQE);
      this.regs.write32(Reg.IQT, this.tail * this.descriptorBytes);
      this.counters.queueErrors.iqe++;
      const action = batch ? "replaced by a fence, queue restarted, the operation failed" : "replaced by a fence, queue restarted";
      this.settings.onQueueError?.({ kind: "IQE", head, code, action });
      if (batch) {
        this.finish(batch, "failed", new VtdDriverError("invalidation-failed",
          `${what} (queue index ${head}) was rejected by the unit: IQE, IQEI ${code} (${IQEI_NAMES[code] ?? "unknown"})`));
      }
    }
    if (fsts & ITE) {
      // Every wait not yet completed was aborted by the unit.
      this.checkCompletions();
      const aborted = this.pending.filter((p) => p.state === "pending");
      for (const batch of aborted) batch.state = "aborted";
      this.regs.write32(Reg.FSTS, ITE);
      this.regs.write32(Reg.IQT, this.tail * this.descriptorBytes);
      this.counters.queueErrors.ite++;
      for (const batch of aborted) {
        if (batch.attempts > this.settings.iteRetries) {
          const endpoints = [...new Set(batch.requests.filter((r) => r.kind === "device-tlb").map((r) => bdf((r as { sid: number }).sid)))];
          this.finish(batch, "failed", new VtdDriverError("invalidation-failed",
            `device-TLB invalidation of ${endpoints.join(", ") || "an endpoint"} not answered in time (ITE) after ${batch.attempts} attempts`));
        } else {
          this.toResubmit.push(batch);
        }
      }
      this.settings.onQueueError?.({ kind: "ITE", head, action: `${aborted.length} aborted wait(s): ${this.toResubmit.length} to resubmit` });
    }
    if (fsts & ICE) {
      this.regs.write32(Reg.FSTS, ICE);
      this.counters.queueErrors.ice++;
      this.settings.onQueueError?.({ kind: "ICE", head, action: "cleared" });
    }
  }

  private resubmitAborted(): void {
    while (this.toResubmit.length > 0) {
      const batch = this.toResubmit.shift()!;
      const i = this.pending.indexOf(batch);
      if (i >= 0) this.pending.splice(i, 1);
      batch.attempts++;
      batch.state = "pending";
      this.counters.resubmissions++;
      this.write(batch);
      this.pending.push(batch);
    }
  }
}
