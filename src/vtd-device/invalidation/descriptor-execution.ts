/**
 * What one queued-invalidation descriptor does (VT-d §6.5.2.1-§6.5.2.8), 128-bit legacy form,
 * and which ones are invalid (VT-d §6.5.2.10). The queue (invalidation-queue.ts) fetches; this
 * decodes and executes. Numbers only: executing a descriptor allocates nothing (an error's
 * explanation is built once, when processing stops on it).
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { ContextCacheDesc, DescriptorType, DeviceTlbDesc, InterruptEntryCacheDesc, InvalidationQueueError, IotlbDesc, WaitDesc } from "../../spec/descriptors.ts";
import { Granularity, Ics, MAMV, Reg } from "../../spec/registers.ts";
import { DeviceTlbRange } from "../caches/device-tlb.ts";
import type { InterruptEntryCache } from "../caches/interrupt-entry-cache.ts";
import { MHMV } from "../../spec/interrupts.ts";
import type { InterruptEvent } from "../faults/interrupt-event.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { ResolvedOptions } from "../options.ts";
import type { RegisterFile } from "../registers/register-file.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { Invalidation } from "./cache-invalidation.ts";
import type { PendingDeviceTlbInvalidations } from "./pending-device-tlb.ts";

/** `execute` results: DONE, BLOCKED (retry later), or an IQERCD.IQEI code (> 0) with `why` set. */
export const DONE = 0;
export const BLOCKED = -1;

const IWC = Number(Ics.IWC);

/** The unit's clock as the executor sees it. */
export interface Clock {
  readonly now: number;
}

/** The unit's clock never reads beyond this (2^50 ms, about 35,700 years): see `advanceTime`. */
export const CLOCK_LIMIT_MS = 2 ** 50;

export class DescriptorExecution {
  /** Why the last descriptor was rejected (the trace's `vtd_iq_error.why`). */
  why = "";
  /** The interrupt entry cache, set by the device when interrupt remapping is offered. */
  interruptEntries: InterruptEntryCache | undefined = undefined;
  private readonly range = new DeviceTlbRange();
  /** Address bits 63:32 below the address width (MGAW = HAW here): higher bits are ignored. */

  constructor(
    private readonly options: ResolvedOptions,
    private readonly regs: RegisterFile,
    private readonly memory: MemoryAccess,
    private readonly invalidation: Invalidation,
    private readonly completionEvent: InterruptEvent,
    private readonly pending: PendingDeviceTlbInvalidations,
    private readonly clock: Clock,
    private readonly tracer: Tracer,
    private readonly stats: DeviceStats,
    private readonly cfg: WalkConfig,
  ) {
  }

  /** Executes one descriptor given as four dwords (w0 = bits 31:0 ... w3 = bits 127:96) fetched at queue index `head`. */
  execute(head: number, w0: number, w1: number, w2: number, w3: number): number {
    const type = (w0 & 0xf) | (((w0 >>> 9) & 7) << 4);
    if (this.tracer.active) {
      this.tracer.emit({ type: "vtd_iq_desc", head, lo: dwords(w0, w1), hi: dwords(w2, w3), kind: DescriptorType[type] ?? `type ${type}` });
    }
    const granularity = (w0 >>> 4) & 3;
    const did = w0 >>> 16;
    switch (type) {
      case DescriptorType.ContextCache:
        if (reserved(CONTEXT_CACHE_RESERVED, w0, w1, w2, w3)) return this.reject(RESERVED, "context-cache descriptor with reserved bits set");
        switch (granularity) {
          case Granularity.Global: this.invalidation.contextGlobal("queue"); return DONE;
          case Granularity.Domain: this.invalidation.contextDomain(did, "queue"); return DONE;
          case Granularity.Device: this.invalidation.contextDevice(w1 & 0xffff, (w1 >>> 16) & 3, did, "queue"); return DONE;
          default: return this.reject(RESERVED, "context-cache descriptor with granularity 0 (a reserved encoding)");
        }
      case DescriptorType.Iotlb:
        if (reserved(IOTLB_RESERVED, w0, w1, w2, w3)) return this.reject(RESERVED, "IOTLB descriptor with reserved bits set");
        switch (granularity) {
          case Granularity.Global: this.invalidation.iotlbGlobal("queue"); return DONE;
          case Granularity.Domain: this.invalidation.iotlbDomain(did, "queue"); return DONE;
          case Granularity.Page: {
            const am = w2 & 0x3f;
            if (am > MAMV) return this.reject(RESERVED, `IOTLB descriptor with AM ${am} above MAMV ${MAMV}`);
            // ADDR bits at and above MGAW are ignored, as in IVA (VT-d §11.4.8.2): they name no input address.
            const address = this.cfg.entryMasks.address(w2, w3);
            this.invalidation.iotlbPages(did, address, am, (w2 & 0x40) !== 0, "queue");
            return DONE;
          }
          default: return this.reject(RESERVED, "IOTLB descriptor with granularity 0 (a reserved encoding)");
        }
      case DescriptorType.DeviceTlb:
        return this.deviceTlb(w0, w1, w2, w3);
      case DescriptorType.InterruptEntryCache:
        if (reserved(INTERRUPT_ENTRY_CACHE_RESERVED, w0, w1, w2, w3)) return this.reject(RESERVED, "interrupt-entry-cache descriptor with reserved bits set");
        return this.interruptEntryCache(w0, w1);
      case DescriptorType.InvalidationWait:
        return this.invalidationWait(w0, w1, w2, w3);
      default:
        return this.reject(InvalidationQueueError.InvalidType, `descriptor type ${type} is not valid in legacy mode`);
    }
  }

  /**
   * Device-TLB invalidation (VT-d §6.5.2.5): sent to the endpoint now, answered after
   * `deviceIotlbLatencyMs`. Without ECAP.DT the type is invalid. With every tracking place taken
   * the descriptor waits (BLOCKED) before anything is sent.
   */
  private deviceTlb(w0: number, w1: number, w2: number, w3: number): number {
    if (!this.options.deviceIotlb) return this.reject(InvalidationQueueError.InvalidType, "device-TLB descriptor without ECAP.DT");
    if (reserved(DEVICE_TLB_RESERVED, w0, w1, w2, w3)) return this.reject(RESERVED, "device-TLB descriptor with reserved bits set");
    if (this.pending.full) return BLOCKED;
    const sid = w1 & 0xffff;
    const range = this.range;
    range.decode(w2, w3, (w2 & 1) !== 0);
    this.invalidation.deviceTlb(sid, range.rangeStart, range.rangeEnd, "queue");
    // Read at each descriptor: an embedder may change the endpoint's latency while the unit runs.
    const { deviceIotlbLatencyMs: latency, deviceIotlbTimeoutMs: timeout } = this.options;
    const timesOut = latency > timeout;
    const due = Math.min(this.clock.now + (timesOut ? timeout : latency), CLOCK_LIMIT_MS);
    this.pending.push(sid, range.rangeStart, range.rangeEnd, due, timesOut);
    return DONE;
  }

  /**
   * Interrupt-entry-cache invalidation (VT-d §6.5.2.7): G = 0 global; G = 1 index-selective, the
   * 2^IM entries from IIDX (IIDX aligned down to 2^IM: hardware may invalidate more than asked).
   * IM above ECAP.MHMV is an invalid field value (IQE, as AM above MAMV). Without interrupt
   * remapping (no cache, ECAP.IR = 0) the descriptor is only counted and traced, as before.
   */
  private interruptEntryCache(w0: number, w1: number): number {
    const indexSelective = ((w0 >>> InterruptEntryCacheDesc.G.shift) & 1) !== 0;
    const mask = (w0 >>> InterruptEntryCacheDesc.IM.shift) & 0x1f;
    const index = (w1 >>> (InterruptEntryCacheDesc.IIDX.shift - 32)) & 0xffff;
    const cache = this.interruptEntries;
    let dropped = 0;
    if (cache) {
      if (indexSelective && mask > MHMV) return this.reject(RESERVED, `interrupt-entry-cache descriptor with IM ${mask} above MHMV ${MHMV}`);
      if (indexSelective) {
        const count = 1 << mask; // mask ≤ MHMV = 15
        dropped = cache.invalidateIndexes(index - (index % count), count);
      } else {
        dropped = cache.invalidateAll();
      }
    }
    this.stats.interruptEntryCacheInvalidations++;
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv_iec", granularity: indexSelective ? "index" : "global", index, mask, dropped });
    return DONE;
  }

  /**
   * Invalidation wait (VT-d §6.5.2.8): completes when everything before it has completed. The
   * status write goes to guest RAM; one aimed elsewhere is dropped (a posted write nothing
   * claims) and the wait still completes: it is not one of the IQE causes (VT-d §6.5.2.10).
   */
  private invalidationWait(w0: number, w1: number, w2: number, w3: number): number {
    if (reserved(WAIT_RESERVED, w0, w1, w2, w3)) return this.reject(RESERVED, "wait descriptor with reserved bits set");
    const interrupt = (w0 & 0x10) !== 0;
    const statusWrite = (w0 & 0x20) !== 0;
    const fence = (w0 & 0x40) !== 0;
    if (!statusWrite && !interrupt && !fence) return this.reject(RESERVED, "wait descriptor with none of SW, IF, FN");
    if (this.pending.length > 0) return BLOCKED;
    // Status address bits 63:2; bits at and above the address width are ignored.
    const address = (w3 & this.cfg.entryMasks.hiAddress) * TWO_POW_32 + ((w2 & ~3) >>> 0);
    if (statusWrite) this.memory.write32(address, w1);
    if (interrupt && (this.regs.get32(Reg.ICS) & IWC) === 0) {
      this.regs.update32(Reg.ICS, IWC, 0);
      this.completionEvent.signal();
    }
    this.stats.invalidationWaits++;
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv_wait", statusWrite, interrupt, data: w1, address: BigInt(address) });
    return DONE;
  }

  private reject(code: InvalidationQueueError, why: string): number {
    this.why = why;
    return code;
  }
}

/** IQEI 4: a reserved field, or a field with an encoding or value the unit does not support. */
const RESERVED = InvalidationQueueError.ReservedField;

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
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}
