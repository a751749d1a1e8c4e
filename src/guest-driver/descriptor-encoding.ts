/**
 * The driver's invalidation requests as queued-invalidation descriptors (VT-d §6.5.2): the legacy
 * types' low and high qwords (128-bit form; with IQA.DW = 1 the queue writes them in their 256-bit
 * form, bits 255:128 zero) and the scalable-mode PASID types (§6.5.2.2, §6.5.2.4), which exist
 * only in the 256-bit form. Fields and type numbers come from src/spec.
 */
import { ContextCacheDesc, DescriptorType, DeviceTlbDesc, InterruptEntryCacheDesc, IotlbDesc, WaitDesc } from "../spec/descriptors.ts";
import { Granularity } from "../spec/registers.ts";
import { PasidCacheDesc, PasidCacheGranularity, PasidIotlbDesc, PasidIotlbGranularity, ScalableDescriptorType } from "../spec/scalable.ts";
import type { UnitCapabilities } from "./discovery.ts";
import type { InvalidationRequest } from "./invalidation.ts";

const b = (n: number) => BigInt(n);

const CONTEXT_TYPE = b(DescriptorType.ContextCache);
const IOTLB_TYPE = b(DescriptorType.Iotlb);
const DEVICE_TLB_TYPE = b(DescriptorType.DeviceTlb);
const WAIT_TYPE = b(DescriptorType.InvalidationWait);
const IEC_TYPE = b(DescriptorType.InterruptEntryCache);
const PASID_CACHE_TYPE = b(ScalableDescriptorType.PasidCache);
const PASID_IOTLB_TYPE = b(ScalableDescriptorType.PasidIotlb);
const IEC_G = 1n << b(InterruptEntryCacheDesc.G.shift), IEC_IM = b(InterruptEntryCacheDesc.IM.shift), IEC_IIDX = b(InterruptEntryCacheDesc.IIDX.shift);
const CC_G = b(ContextCacheDesc.G.shift), CC_DID = b(ContextCacheDesc.DID.shift), CC_SID = b(ContextCacheDesc.SID.shift), CC_FM = b(ContextCacheDesc.FM.shift);
const IOTLB_G = b(IotlbDesc.G.shift), IOTLB_DID = b(IotlbDesc.DID.shift), IOTLB_DR = 1n << b(IotlbDesc.DR.shift), IOTLB_DW = 1n << b(IotlbDesc.DW.shift);
const IOTLB_IH = 1n << b(IotlbDesc.IH.shift);
const DTLB_SID = b(DeviceTlbDesc.SID.shift), DTLB_S = 1n << b(DeviceTlbDesc.S.shift);
const WAIT_IF = 1n << b(WaitDesc.IF.shift), WAIT_SW = 1n << b(WaitDesc.SW.shift), WAIT_FN = 1n << b(WaitDesc.FN.shift);
const WAIT_DATA = b(WaitDesc.STATUS_DATA.shift);
const PC_G = b(PasidCacheDesc.G.shift), PC_DID = b(PasidCacheDesc.DID.shift), PC_PASID = b(PasidCacheDesc.PASID.shift);
const PIOTLB_G = b(PasidIotlbDesc.G.shift), PIOTLB_DID = b(PasidIotlbDesc.DID.shift), PIOTLB_PASID = b(PasidIotlbDesc.PASID.shift);
const PIOTLB_IH = 1n << b(PasidIotlbDesc.IH.shift);

/** Low and high qwords of the descriptor for `r`. */
export function encodeDescriptor(r: InvalidationRequest, caps: UnitCapabilities): [bigint, bigint] {
  switch (r.kind) {
    case "context-global": return [CONTEXT_TYPE | (b(Granularity.Global) << CC_G), 0n];
    case "context-domain": return [CONTEXT_TYPE | (b(Granularity.Domain) << CC_G) | (b(r.did) << CC_DID), 0n];
    case "context-device":
      return [CONTEXT_TYPE | (b(Granularity.Device) << CC_G) | (b(r.did) << CC_DID) | (b(r.sid) << CC_SID) | (b(r.fm) << CC_FM), 0n];
    case "iotlb-global": return [iotlbLow(Granularity.Global, 0, caps), 0n];
    case "iotlb-domain": return [iotlbLow(Granularity.Domain, r.did, caps), 0n];
    case "iotlb-page": return [iotlbLow(Granularity.Page, r.did, caps), b(r.address) | (r.ih ? IOTLB_IH : 0n) | b(r.am)];
    case "device-tlb": return [DEVICE_TLB_TYPE | (b(r.sid) << DTLB_SID), r.address | (r.size ? DTLB_S : 0n)];
    // G = 0 global, 1 index-selective (VT-d §6.5.2.7).
    case "iec-global": return [IEC_TYPE, 0n];
    case "iec-index": return [IEC_TYPE | IEC_G | (b(r.im) << IEC_IM) | (b(r.index) << IEC_IIDX), 0n];
    case "pasid-cache-global": return [PASID_CACHE_TYPE | (b(PasidCacheGranularity.Global) << PC_G), 0n];
    case "pasid-cache-domain": return [PASID_CACHE_TYPE | (b(PasidCacheGranularity.Domain) << PC_G) | (b(r.did) << PC_DID), 0n];
    case "pasid-cache":
      return [PASID_CACHE_TYPE | (b(PasidCacheGranularity.Pasid) << PC_G) | (b(r.did) << PC_DID) | (b(r.pasid) << PC_PASID), 0n];
    case "pasid-iotlb": return [pasidIotlbLow(PasidIotlbGranularity.Pasid, r.did, r.pasid), 0n];
    case "pasid-iotlb-page":
      return [pasidIotlbLow(PasidIotlbGranularity.Page, r.did, r.pasid), b(r.address) | (r.ih ? PIOTLB_IH : 0n) | b(r.am)];
  }
}

function iotlbLow(granularity: number, did: number, caps: UnitCapabilities): bigint {
  let lo = IOTLB_TYPE | (b(granularity) << IOTLB_G) | (b(did) << IOTLB_DID);
  if (caps.drainRead) lo |= IOTLB_DR;
  if (caps.drainWrite) lo |= IOTLB_DW;
  return lo;
}

function pasidIotlbLow(granularity: number, did: number, pasid: number): bigint {
  return PASID_IOTLB_TYPE | (b(granularity) << PIOTLB_G) | (b(did) << PIOTLB_DID) | (b(pasid) << PIOTLB_PASID);
}

/** The wait descriptor's low qword: a status write (SW) of `data`, and IF to raise the completion event. */
export function waitLow(data: number, interrupt: boolean): bigint {
  return WAIT_TYPE | WAIT_SW | (interrupt ? WAIT_IF : 0n) | (b(data) << WAIT_DATA);
}

/** A wait with FN and nothing else: what a rejected descriptor is overwritten with. */
export const FENCE_ONLY_WAIT = WAIT_TYPE | WAIT_FN;
