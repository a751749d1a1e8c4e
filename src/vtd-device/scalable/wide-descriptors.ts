/**
 * 256-bit invalidation descriptors (IQA.DW = 1, scalable mode; VT-d 5.10 §6.5.2): the legacy types
 * in their 256-bit form (bits 255:128 reserved) go to the legacy executor; the PASID-cache (type 7,
 * §6.5.2.2) and PASID-based IOTLB (type 6, §6.5.2.4) descriptors are checked here and drop what
 * they name from the PASID cache and the scalable IOTLB (scalable-caches.ts); the PASID-based
 * device-TLB descriptor (type 8, §6.5.2.6) goes to the endpoint as the legacy one does. Numbers
 * only; nothing is allocated unless a trace listener takes the vtd_inv_pasid event. The PASID
 * descriptors are counted once, in UnitCounters.pasidInvalidations (scalable-caches.ts).
 */
import { InvalidationQueueError } from "../../spec/descriptors.ts";
import { MAMV } from "../../spec/registers.ts";
import { PasidCacheDesc, PasidCacheGranularity, PasidDeviceTlbDesc, PasidIotlbDesc, PasidIotlbGranularity, ScalableDescriptorType } from "../../spec/scalable.ts";
import type { DescriptorExecution } from "../invalidation/descriptor-execution.ts";
import type { ScalableCaches } from "./scalable-caches.ts";
import type { Tracer } from "../trace.ts";

const PASID_CACHE_GRANULARITY = ["domain", "pasid", "reserved", "global"] as const;

/** IQEI 4: a reserved field, or a field value the unit does not support. */
const RESERVED = InvalidationQueueError.ReservedField;

function dwordMasks(lo: bigint): readonly [number, number] {
  return [Number(lo & 0xffff_ffffn), Number(lo >> 32n)];
}
const PASID_CACHE_LO = dwordMasks(PasidCacheDesc.RESERVED_LO);
const PASID_IOTLB_LO = dwordMasks(PasidIotlbDesc.RESERVED_LO);
const PASID_IOTLB_HI = dwordMasks(PasidIotlbDesc.RESERVED_HI);
const PASID_DEVICE_TLB_LO = dwordMasks(PasidDeviceTlbDesc.RESERVED_LO);
const PASID_DEVICE_TLB_HI = dwordMasks(PasidDeviceTlbDesc.RESERVED_HI);

export class WideDescriptorExecution {
  /** Why the last descriptor was rejected (for the queue's IQE trace). */
  why = "";
  /** PASID-based device-TLB descriptors completed (the other PASID descriptors: UnitCounters.pasidInvalidations). */
  pasidDeviceTlbInvalidations = 0;
  /** Scalable mode's caches (set by the device): what the PASID descriptors drop from. */
  caches: ScalableCaches | undefined = undefined;

  constructor(private readonly legacy: DescriptorExecution, private readonly tracer?: Tracer) {}

  /** Executes the descriptor given as eight dwords (w0 = bits 31:0 ... w7 = bits 255:224). Returns the legacy executor's codes. */
  execute(head: number, w0: number, w1: number, w2: number, w3: number, w4: number, w5: number, w6: number, w7: number): number {
    const type = (w0 & 0xf) | (((w0 >>> 9) & 7) << 4);
    switch (type) {
      case ScalableDescriptorType.PasidCache: {
        if ((w0 & PASID_CACHE_LO[0]) | (w1 & PASID_CACHE_LO[1]) | w2 | w3 | w4 | w5 | w6 | w7) return this.reject(RESERVED, "PASID-cache descriptor with reserved bits set");
        const granularity = (w0 >>> 4) & 3, did = w0 >>> 16, pasid = w1 & 0xf_ffff;
        if (granularity === PasidCacheGranularity.Reserved) return this.reject(RESERVED, "PASID-cache descriptor with granularity 10 (reserved)");
        this.caches?.pasidCacheDescriptor(granularity, did, pasid);
        if (this.tracer?.active) {
          this.tracer.emit({ type: "vtd_inv_pasid", cache: "pasid-cache", granularity: PASID_CACHE_GRANULARITY[granularity] as "domain" | "pasid" | "global", did, pasid });
        }
        // Then the listener behind the caches (the notifiers), as the legacy invalidations tell it.
        const listener = this.caches?.next;
        if (listener?.active) listener.pasidCacheInvalidated?.(granularity, did, pasid);
        return 0;
      }
      case ScalableDescriptorType.PasidIotlb: {
        if ((w0 & PASID_IOTLB_LO[0]) | (w1 & PASID_IOTLB_LO[1]) | (w2 & PASID_IOTLB_HI[0]) | (w3 & PASID_IOTLB_HI[1]) | w4 | w5 | w6 | w7) {
          return this.reject(RESERVED, "PASID-based IOTLB descriptor with reserved bits set");
        }
        const granularity = (w0 >>> 4) & 3;
        if (granularity !== PasidIotlbGranularity.Pasid && granularity !== PasidIotlbGranularity.Page) {
          return this.reject(RESERVED, `PASID-based IOTLB descriptor with granularity ${granularity} (reserved)`);
        }
        if (granularity === PasidIotlbGranularity.Page && (w2 & 0x3f) > MAMV) return this.reject(RESERVED, `PASID-based IOTLB descriptor with AM ${w2 & 0x3f} above MAMV ${MAMV}`);
        // ADDR (bits 127:76 of the descriptor): a page number to compare, exact below 2^53; AM bits 69:64, IH bit 70.
        const address = (w3 >>> 0) * 2 ** 32 + ((w2 & 0xffff_f000) >>> 0);
        const page = granularity === PasidIotlbGranularity.Page, did = w0 >>> 16, pasid = w1 & 0xf_ffff, am = w2 & 0x3f, ih = (w2 & 0x40) !== 0;
        this.caches?.pasidIotlbDescriptor(page, did, pasid, address, am);
        if (this.tracer?.active) {
          this.tracer.emit({ type: "vtd_inv_pasid", cache: "pasid-iotlb", granularity: page ? "page" : "pasid", did, pasid, ...(page ? { address: BigInt(address), am, ih } : {}) });
        }
        const listener = this.caches?.next;
        if (listener?.active) {
          // 2^AM pages from ADDR aligned down to them (page-selective), or the whole PASID.
          const span = page ? 4096 * 2 ** am : Infinity;
          listener.pasidIotlbInvalidated?.(did, pasid, page ? address - (address % span) : 0, span, ih);
        }
        return 0;
      }
      case ScalableDescriptorType.PasidDeviceTlb: {
        if ((w0 & PASID_DEVICE_TLB_LO[0]) | (w1 & PASID_DEVICE_TLB_LO[1]) | (w2 & PASID_DEVICE_TLB_HI[0]) | (w3 & PASID_DEVICE_TLB_HI[1]) | w4 | w5 | w6 | w7) {
          return this.reject(RESERVED, "PASID-based device-TLB descriptor with reserved bits set");
        }
        // The endpoints' device-TLBs are not tagged by PASID here: the range is dropped for every
        // PASID of the endpoint (more than asked, which the spec allows). It is the legacy
        // device-TLB invalidation of the same endpoint and range (ECAP.DT, latency, ITE): type 3,
        // SID in bits 47:32, S in bit 64.
        const sid = (w0 >>> 16) & 0xffff;
        const size = (w2 >>> 11) & 1;
        const outcome = this.legacy.execute(head, 3, sid, ((w2 & 0xffff_f000) | size) >>> 0, w3);
        if (outcome > 0) this.why = outcome === InvalidationQueueError.InvalidType ? "PASID-based device-TLB descriptor without ECAP.DT" : this.legacy.why;
        if (outcome === 0) this.pasidDeviceTlbInvalidations++;
        return outcome;
      }
      default: {
        // A legacy type in its 256-bit form: bits 255:128 are reserved.
        if (type >= 1 && type <= 5 && (w4 | w5 | w6 | w7) !== 0) return this.reject(RESERVED, `descriptor type ${type} with bits 255:128 set`);
        const outcome = this.legacy.execute(head, w0, w1, w2, w3);
        if (outcome > 0) this.why = this.legacy.why;
        return outcome;
      }
    }
  }

  private reject(code: InvalidationQueueError, why: string): number {
    this.why = why;
    return code;
  }
}
