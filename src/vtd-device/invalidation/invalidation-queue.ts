/**
 * Queued invalidation (VT-d §6.5.2): the invalidation queue registers IQA/IQH/IQT, descriptor
 * fetch and execution, the invalidation wait descriptor with its status write and completion
 * event, device-TLB invalidations that take time at the endpoint, and the queue errors IQE and ITE.
 *
 * Time is the unit's own clock, moved by `advanceTime`. With the default options every tail
 * write processes the queue to the end at once; with `queueDescriptorTimeMs` each descriptor
 * takes that long, and a wait behind a slow device-TLB invalidation completes only when the
 * endpoint has answered.
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { ContextCacheDesc, DescriptorType, DeviceTlbDesc, InterruptEntryCacheDesc, InvalidationQueueError, IotlbDesc, WaitDesc } from "../../spec/descriptors.ts";
import { Fsts, Granularity, Gsts, Ics, MAMV, Reg } from "../../spec/registers.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { deviceTlbRange, type DeviceTlbs } from "../caches/device-tlb.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { InterruptEvent } from "../faults/interrupt-event.ts";
import type { Invalidation } from "./cache-invalidation.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { ResolvedOptions } from "../options.ts";
import type { RegisterFile } from "../registers/register-file.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";

const QIES = Number(Gsts.QIES);
const IQE = Number(Fsts.IQE);
const ITE = Number(Fsts.ITE);
const IWC = Number(Ics.IWC);

interface PendingDeviceTlbInvalidation {
  sid: number;
  start: number;
  end: number;
  completesAt: number;
  timesOutAt: number;
}

export class InvalidationQueue {
  /** The unit's clock (ms). */
  now = 0;
  private base = 0;
  private entries = 256;
  private head = 0;
  private disableRequested = false;
  /** Time at which the next descriptor may be fetched (stepped processing only). */
  private nextFetchAt = 0;
  private readonly pendingDeviceTlb: PendingDeviceTlbInvalidation[] = [];

  constructor(
    private readonly options: ResolvedOptions,
    private readonly regs: RegisterFile,
    private readonly memory: MemoryAccess,
    private readonly invalidation: Invalidation,
    private readonly faults: FaultRecording,
    private readonly completionEvent: InterruptEvent,
    private readonly deviceTlbs: DeviceTlbs,
    private readonly tracer: Tracer,
    private readonly stats: DeviceStats,
    private readonly cfg: WalkConfig,
  ) {}

  reset(): void {
    this.now = 0;
    this.head = 0;
    this.disableRequested = false;
    this.nextFetchAt = 0;
    this.pendingDeviceTlb.length = 0;
  }

  get enabled(): boolean {
    return (this.regs.get32(Reg.GSTS) & QIES) !== 0;
  }

  /** GCMD.QIE set: IQA is latched, QIES set, and a tail already written is processed (VT-d §6.5.2). */
  enable(): void {
    this.disableRequested = false;
    const iqa = this.regs.get64(Reg.IQA);
    this.base = Number(iqa & ((1n << BigInt(this.cfg.awBits)) - 1n) & ~0xfffn);
    const qs = Number(iqa & 7n);
    const dw = Number((iqa >> 11n) & 1n);
    this.entries = 2 ** (qs + 8 - dw);
    this.head = 0;
    this.setHead();
    this.regs.update32(Reg.GSTS, QIES, 0);
    this.nextFetchAt = this.now;
    this.process();
  }

  /** GCMD.QIE clear: honoured once the queue is idle (head = tail, nothing outstanding). */
  disable(): void {
    this.disableRequested = true;
    this.completeDisableIfIdle();
  }

  private completeDisableIfIdle(): void {
    if (!this.disableRequested || !this.enabled) return;
    if (this.head !== this.tailIndex() || this.pendingDeviceTlb.length > 0) return;
    this.disableRequested = false;
    this.regs.update32(Reg.GSTS, 0, QIES);
    this.head = 0;
    this.setHead();
  }

  private get dw(): number {
    return (this.regs.get32(Reg.IQA) >>> 11) & 1;
  }

  /** Bits of an upper dword below the address width. */
  private get upperAddressMask(): number {
    return (1 << (this.cfg.awBits - 32)) - 1;
  }

  private tailIndex(): number {
    return (this.regs.get32(Reg.IQT) >>> 4) & 0x7fff;
  }

  private setHead(): void {
    this.regs.set32(Reg.IQH, (this.head << 4) >>> 0);
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

  advanceTime(ms: number): void {
    if (!(ms > 0)) return;
    const until = this.now + ms;
    // Visit every moment something happens in (now, until], in order.
    while (true) {
      const next = this.nextEventTime();
      if (next > until) break;
      this.now = Math.max(this.now, next);
      this.settleDeviceTlb();
      this.process();
      if (this.nextEventTime() <= this.now) break; // nothing can progress at this instant
    }
    this.now = until;
    this.settleDeviceTlb();
    this.process();
  }

  private nextEventTime(): number {
    let next = Infinity;
    for (const p of this.pendingDeviceTlb) next = Math.min(next, p.completesAt, p.timesOutAt);
    if (this.options.queueDescriptorTimeMs > 0 && this.enabled && this.head !== this.tailIndex()) next = Math.min(next, this.nextFetchAt);
    return next;
  }

  /** Endpoints that answered drop their translations; one that never answers in time raises ITE. */
  private settleDeviceTlb(): void {
    for (let i = 0; i < this.pendingDeviceTlb.length; ) {
      const p = this.pendingDeviceTlb[i]!;
      if (p.completesAt <= this.now && p.completesAt <= p.timesOutAt) {
        this.deviceTlbs.invalidate(p.sid, p.start, p.end);
        this.pendingDeviceTlb.splice(i, 1);
      } else if (p.timesOutAt <= this.now) {
        this.pendingDeviceTlb.splice(i, 1);
        this.timeOut(p.sid);
      } else {
        i++;
      }
    }
    this.completeDisableIfIdle();
  }

  /**
   * ITE (VT-d §6.5.2.10): the waits that were pending are aborted, the head stays where it is, and
   * fetching stops until software clears ITE and writes the tail again.
   */
  private timeOut(sid: number): void {
    this.deviceTlbs.invalidate(sid, 0, 2 ** 64);
    this.error("ITE", `device-TLB invalidation of ${sid.toString(16)} not answered within ${this.options.deviceIotlbTimeoutMs} ms`);
    this.faults.raise(Fsts.ITE);
  }

  /** Fetches and executes descriptors while the spec allows (VT-d §6.5.2: QIES, QH ≠ QT, no IQE/ITE). */
  private process(): void {
    const stepped = this.options.queueDescriptorTimeMs > 0;
    while (this.enabled) {
      if (this.regs.get32(Reg.FSTS) & (IQE | ITE)) return;
      const tail = this.tailIndex();
      if (this.dw === 1) return this.queueError(InvalidationQueueError.InvalidWidth, "IQA.DW = 1 needs scalable mode, which this unit does not offer");
      if (tail >= this.entries) return this.queueError(InvalidationQueueError.InvalidTail, `tail ${tail} beyond a queue of ${this.entries} descriptors`);
      if (this.head === tail) break;
      if (stepped && this.now < this.nextFetchAt) return;
      const at = this.base + this.head * 16;
      const w0 = this.memory.read32(at), w1 = this.memory.read32(at + 4), w2 = this.memory.read32(at + 8), w3 = this.memory.read32(at + 12);
      if (w0 < 0 || w1 < 0 || w2 < 0 || w3 < 0) return this.queueError(InvalidationQueueError.FetchError, `descriptor at ${at.toString(16)} is outside RAM`);
      const outcome = this.execute(w0, w1, w2, w3);
      if (outcome === BLOCKED) return;
      if (outcome !== DONE) return this.queueError(InvalidationQueueError.InvalidDescriptor, outcome);
      this.stats.descriptorsProcessed++;
      this.head = (this.head + 1) % this.entries;
      this.setHead();
      if (stepped) this.nextFetchAt = Math.max(this.nextFetchAt, this.now) + this.options.queueDescriptorTimeMs;
    }
    this.completeDisableIfIdle();
  }

  /**
   * Executes one descriptor given as four dwords (w0 = bits 31:0 ... w3 = bits 127:96): DONE,
   * BLOCKED (a wait behind outstanding work), or why it is invalid. Numbers only: no allocation.
   */
  private execute(w0: number, w1: number, w2: number, w3: number): string {
    const type = (w0 & 0xf) | (((w0 >>> 9) & 7) << 4);
    if (this.tracer.active) {
      this.tracer.emit({ type: "vtd_iq_desc", head: this.head, lo: dwords(w0, w1), hi: dwords(w2, w3), kind: DescriptorType[type] ?? `type ${type}` });
    }
    const granularity = (w0 >>> 4) & 3;
    const did = w0 >>> 16;
    switch (type) {
      case DescriptorType.ContextCache:
        if (reserved(CONTEXT_CACHE_RESERVED, w0, w1, w2, w3)) return "context-cache descriptor with reserved bits set";
        switch (granularity) {
          case Granularity.Global: this.invalidation.contextGlobal("queue"); return DONE;
          case Granularity.Domain: this.invalidation.contextDomain(did, "queue"); return DONE;
          case Granularity.Device: this.invalidation.contextDevice(w1 & 0xffff, (w1 >>> 16) & 3, did, "queue"); return DONE;
          default: return "context-cache descriptor with granularity 0";
        }
      case DescriptorType.Iotlb:
        if (reserved(IOTLB_RESERVED, w0, w1, w2, w3)) return "IOTLB descriptor with reserved bits set";
        switch (granularity) {
          case Granularity.Global: this.invalidation.iotlbGlobal("queue"); return DONE;
          case Granularity.Domain: this.invalidation.iotlbDomain(did, "queue"); return DONE;
          case Granularity.Page: {
            const am = w2 & 0x3f;
            if (am > MAMV) return `IOTLB descriptor with AM ${am} above MAMV ${MAMV}`;
            this.invalidation.iotlbPages(did, w3 * TWO_POW_32 + ((w2 & 0xffff_f000) >>> 0), am, (w2 & 0x40) !== 0, "queue");
            return DONE;
          }
          default: return "IOTLB descriptor with granularity 0";
        }
      case DescriptorType.DeviceTlb: {
        if (!this.options.deviceIotlb) return "device-TLB descriptor without ECAP.DT";
        if (reserved(DEVICE_TLB_RESERVED, w0, w1, w2, w3)) return "device-TLB descriptor with reserved bits set";
        const sid = w1 & 0xffff;
        const { start, end } = deviceTlbRange(w3 * TWO_POW_32 + ((w2 & 0xffff_f000) >>> 0), (w2 & 1) !== 0);
        this.invalidation.deviceTlb(sid, start, end, "queue");
        this.pendingDeviceTlb.push({
          sid, start, end,
          completesAt: this.now + this.options.deviceIotlbLatencyMs,
          timesOutAt: this.now + this.options.deviceIotlbTimeoutMs,
        });
        this.settleDeviceTlb();
        return DONE;
      }
      case DescriptorType.InterruptEntryCache:
        if (reserved(INTERRUPT_ENTRY_CACHE_RESERVED, w0, w1, w2, w3)) return "interrupt-entry-cache descriptor with reserved bits set";
        this.stats.interruptEntryCacheInvalidations++;
        if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "iec", granularity: w0 & 0x10 ? "index" : "global", source: "queue" });
        return DONE;
      case DescriptorType.InvalidationWait:
        return this.invalidationWait(w0, w1, w2, w3);
      default:
        return `descriptor type ${type} is not valid in legacy mode`;
    }
  }

  /** Invalidation wait (VT-d §6.5.2.8): completes when everything before it has completed. */
  private invalidationWait(w0: number, w1: number, w2: number, w3: number): string {
    if (reserved(WAIT_RESERVED, w0, w1, w2, w3)) return "wait descriptor with reserved bits set";
    const interrupt = (w0 & 0x10) !== 0;
    const statusWrite = (w0 & 0x20) !== 0;
    const fence = (w0 & 0x40) !== 0;
    if (!statusWrite && !interrupt && !fence) return "wait descriptor with none of SW, IF, FN";
    if (this.pendingDeviceTlb.length > 0) return BLOCKED;
    // Status address bits 63:2; bits at and above the address width are ignored.
    const address = (w3 & this.upperAddressMask) * TWO_POW_32 + ((w2 & ~3) >>> 0);
    if (statusWrite && !this.memory.write32(address, w1)) return `status address ${address.toString(16)} is outside RAM`;
    if (interrupt && (this.regs.get32(Reg.ICS) & IWC) === 0) {
      this.regs.update32(Reg.ICS, IWC, 0);
      this.completionEvent.signal();
    }
    this.stats.invalidationWaits++;
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv_wait", statusWrite, interrupt, data: w1, address: BigInt(address) });
    return DONE;
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
}

const DONE = "done";
const BLOCKED = "blocked";

/** A descriptor's reserved bits as four dword masks, derived from the spec's 64-bit masks. */
type ReservedMasks = readonly [number, number, number, number];
function masks(lo: bigint, hi: bigint): ReservedMasks {
  return [Number(lo & 0xffff_ffffn), Number(lo >> 32n), Number(hi & 0xffff_ffffn), Number(hi >> 32n)];
}
const CONTEXT_CACHE_RESERVED = masks(ContextCacheDesc.RESERVED_LO, ContextCacheDesc.RESERVED_HI);
const IOTLB_RESERVED = masks(IotlbDesc.RESERVED_LO, IotlbDesc.RESERVED_HI);
const DEVICE_TLB_RESERVED = masks(DeviceTlbDesc.RESERVED_LO, DeviceTlbDesc.RESERVED_HI);
const INTERRUPT_ENTRY_CACHE_RESERVED = masks(InterruptEntryCacheDesc.RESERVED_LO, InterruptEntryCacheDesc.RESERVED_HI);
const WAIT_RESERVED = masks(WaitDesc.RESERVED_LO, WaitDesc.RESERVED_HI);

function reserved(m: ReservedMasks, w0: number, w1: number, w2: number, w3: number): boolean {
  return ((w0 & m[0]) | (w1 & m[1]) | (w2 & m[2]) | (w3 & m[3])) !== 0;
}

function dwords(low: number, high: number): bigint {
  return (BigInt(high) << 32n) | BigInt(low);
}
