/**
 * Invalidation requests, as the driver thinks of them, and the two ways to carry them out:
 * queued invalidation (VT-d §6.5.2) and the register interface (VT-d §6.5.1). Both take a batch
 * and either wait by polling (`run`) or return a Promise (`runAsync`).
 */
import { PAGE_SIZE } from "../spec/entries.ts";
import type { DriverCounters } from "./counters.ts";
import type { UnitCapabilities } from "./discovery.ts";
import { VtdDriverError } from "./errors.ts";

export type InvalidationRequest =
  | { kind: "context-global" }
  | { kind: "context-domain"; did: number }
  /** Device-selective; `did` is the domain the entry had (0 for a not-present entry under CM = 1). */
  | { kind: "context-device"; did: number; sid: number; fm: number }
  | { kind: "iotlb-global" }
  | { kind: "iotlb-domain"; did: number }
  /** 2^am pages at `address` (aligned to them); ih: only leaf entries changed. */
  | { kind: "iotlb-page"; did: number; address: number; am: number; ih: boolean }
  /** `address` in the ATS encoding: with `size`, the lowest clear bit from 12 up gives the extent. */
  | { kind: "device-tlb"; sid: number; address: bigint; size: boolean }
  /** Interrupt entry cache (VT-d §6.5.2.7), queued only: every IRTE, or 2^im IRTEs from `index`. */
  | { kind: "iec-global" }
  | { kind: "iec-index"; index: number; im: number }
  /** Scalable mode (256-bit queue): every PASID-cache entry (VT-d §6.5.2.2, G = 11). */
  | { kind: "pasid-cache-global" }
  /** Every PASID-cache entry of domain `did`, all PASIDs (VT-d §6.5.2.2, G = 00; Linux's QI_PC_ALL_PASIDS). */
  | { kind: "pasid-cache-domain"; did: number }
  /** The PASID-cache entries of `pasid` in domain `did` (VT-d §6.5.2.2, G = 01). */
  | { kind: "pasid-cache"; did: number; pasid: number }
  /** PASID-based IOTLB invalidation (VT-d §6.5.2.4): every entry of `pasid` in `did` (G = 10). */
  | { kind: "pasid-iotlb"; did: number; pasid: number }
  /** 2^am pages at `address` of `pasid` in `did` (G = 11); ih: only leaf entries changed. */
  | { kind: "pasid-iotlb-page"; did: number; pasid: number; address: number; am: number; ih: boolean };

export interface Invalidator {
  readonly kind: "queued" | "register";
  /** Carries out the batch and returns when the unit reports it complete (polling). */
  run(requests: readonly InvalidationRequest[]): void;
  /** Carries out the batch; the Promise resolves on completion, without busy-waiting where the unit allows. */
  runAsync(requests: readonly InvalidationRequest[]): Promise<void>;
}

/** What each field of a request may hold: its descriptor field's range (VT-d §6.5.2), a page address, a flag, an ATS address. */
type FieldRule = number | "page" | "flag" | "bigint";
const U16 = 0xffff, PASID = 0xf_ffff, AM = 63;
const REQUEST_FIELDS: Record<InvalidationRequest["kind"], Record<string, FieldRule>> = {
  "context-global": {}, "context-domain": { did: U16 }, "context-device": { did: U16, sid: U16, fm: 3 },
  "iotlb-global": {}, "iotlb-domain": { did: U16 }, "iotlb-page": { did: U16, am: AM, address: "page", ih: "flag" },
  "device-tlb": { sid: U16, address: "bigint", size: "flag" },
  "iec-global": {}, "iec-index": { index: U16, im: 31 },
  "pasid-cache-global": {}, "pasid-cache-domain": { did: U16 }, "pasid-cache": { did: U16, pasid: PASID },
  "pasid-iotlb": { did: U16, pasid: PASID }, "pasid-iotlb-page": { did: U16, pasid: PASID, am: AM, address: "page", ih: "flag" },
};

/**
 * A request made outside the driver (runInvalidations) that no descriptor can carry: an error
 * naming its kind and field. PASID kinds exist only as 256-bit descriptors (`scalable`).
 */
export function checkRequest(r: InvalidationRequest, scalable: boolean): void {
  const kind: unknown = (r as { kind?: unknown } | undefined)?.kind;
  if (typeof kind !== "string" || !Object.hasOwn(REQUEST_FIELDS, kind)) {
    throw new VtdDriverError("bad-argument", `invalidation request kind ${String(kind)}: expected one of ${Object.keys(REQUEST_FIELDS).join(", ")}`);
  }
  if (kind.startsWith("pasid-") && !scalable) throw new VtdDriverError("unsupported", `${kind}: needs scalable mode (256-bit descriptors, VT-d §6.5.2)`);
  const fields = r as unknown as Record<string, unknown>;
  for (const [field, rule] of Object.entries(REQUEST_FIELDS[kind as InvalidationRequest["kind"]])) {
    const v = fields[field];
    const fail = (expected: string) => {
      throw new VtdDriverError("bad-argument", `${kind}: ${field} ${typeof v === "number" && rule === "page" ? `0x${v.toString(16)}` : String(v)}: expected ${expected}`);
    };
    if (rule === "flag") {
      if (typeof v !== "boolean") fail("true or false");
    } else if (rule === "bigint") {
      if (typeof v !== "bigint" || v < 0n) fail("a bigint (the ATS address encoding)");
    } else if (rule === "page") {
      const block = PAGE_SIZE * 2 ** Number(fields.am);
      if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) % block !== 0) fail(`a multiple of 0x${block.toString(16)} (2^am pages)`);
    } else if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > rule) {
      fail(`an integer 0..${rule}`);
    }
  }
}

/** The mask (AM) of the smallest aligned block of 2^AM pages containing [start, start + length). */
export function addressMask(start: number, length: number): { address: number; am: number } {
  const first = Math.floor(start / PAGE_SIZE);
  const last = Math.floor((start + length - 1) / PAGE_SIZE);
  let am = 0;
  let block = 1;
  while (Math.floor(first / block) !== Math.floor(last / block)) {
    am++;
    block *= 2;
  }
  return { address: Math.floor(first / block) * block * PAGE_SIZE, am };
}

/**
 * One invalidation for a contiguous range: page-selective with the covering mask, or
 * domain-selective when the unit has no PSI or the mask is above CAP.MAMV.
 */
export function iotlbRange(caps: UnitCapabilities, counters: DriverCounters, did: number, start: number, length: number, leafOnly: boolean): InvalidationRequest {
  const { address, am } = addressMask(start, length);
  if (!caps.pageSelective || am > caps.mamv) {
    counters.pageSelectiveFallbacks++;
    return { kind: "iotlb-domain", did };
  }
  return { kind: "iotlb-page", did, address, am, ih: leafOnly };
}

/**
 * A first-stage range of `pasid` (VT-d §6.5.2.4): page-selective with the covering mask, or the
 * whole PASID when the mask is above CAP.MAMV.
 */
export function pasidIotlbRange(caps: UnitCapabilities, counters: DriverCounters, did: number, pasid: number, start: number, length: number, leafOnly: boolean): InvalidationRequest {
  const { address, am } = addressMask(start, length);
  if (am > caps.mamv) {
    counters.pageSelectiveFallbacks++;
    return { kind: "pasid-iotlb", did, pasid };
  }
  return { kind: "pasid-iotlb-page", did, pasid, address, am, ih: leafOnly };
}

/** A device-TLB invalidation of the range, in the ATS size encoding (PCIe ATS §3.1.2). */
export function deviceTlbRange(sid: number, start: number, length: number): InvalidationRequest {
  const { address, am } = addressMask(start, length);
  if (am === 0) return { kind: "device-tlb", sid, address: BigInt(address), size: false };
  if (am >= 52) return deviceTlbEverything(sid);
  const sizeBits = BigInt(2 ** (am - 1) - 1) << 12n;
  return { kind: "device-tlb", sid, address: BigInt(address) | sizeBits, size: true };
}

/** Every translation the endpoint holds: bits 62:12 set, bit 63 clear (a 2^64-byte extent). */
export function deviceTlbEverything(sid: number): InvalidationRequest {
  return { kind: "device-tlb", sid, address: 0x7fff_ffff_ffff_f000n, size: true };
}

export function countRequests(counters: DriverCounters, requests: readonly InvalidationRequest[]): void {
  for (const r of requests) {
    switch (r.kind) {
      case "context-global": counters.contextInvalidations.global++; break;
      case "context-domain": counters.contextInvalidations.domain++; break;
      case "context-device": counters.contextInvalidations.device++; break;
      case "iotlb-global": counters.iotlbInvalidations.global++; break;
      case "iotlb-domain": counters.iotlbInvalidations.domain++; break;
      case "iotlb-page": counters.iotlbInvalidations.page++; break;
      case "device-tlb": counters.deviceTlbInvalidations++; break;
      case "iec-global": counters.interruptEntryInvalidations.global++; break;
      case "iec-index": counters.interruptEntryInvalidations.index++; break;
      case "pasid-cache": counters.pasidCacheInvalidations++; break;
      case "pasid-cache-global": counters.pasidCacheInvalidations++; break;
      case "pasid-cache-domain": counters.pasidCacheInvalidations++; break;
      case "pasid-iotlb": counters.pasidIotlbInvalidations.pasid++; break;
      case "pasid-iotlb-page": counters.pasidIotlbInvalidations.page++; break;
    }
  }
}

export function describeRequest(r: InvalidationRequest): string {
  switch (r.kind) {
    case "context-global": return "global context-cache invalidation";
    case "context-domain": return `context-cache invalidation of domain ${r.did}`;
    case "context-device": return `context-cache invalidation of device ${r.sid.toString(16)} (DID ${r.did})`;
    case "iotlb-global": return "global IOTLB invalidation";
    case "iotlb-domain": return `IOTLB invalidation of domain ${r.did}`;
    case "iotlb-page": return `page-selective IOTLB invalidation of domain ${r.did} at 0x${r.address.toString(16)}, AM ${r.am}`;
    case "device-tlb": return `device-TLB invalidation of device ${r.sid.toString(16)} at 0x${r.address.toString(16)}${r.size ? " (sized)" : ""}`;
    case "iec-global": return "global interrupt-entry-cache invalidation";
    case "iec-index": return `interrupt-entry-cache invalidation of ${2 ** r.im} entries from index ${r.index}`;
    case "pasid-cache-global": return "global PASID-cache invalidation";
    case "pasid-cache-domain": return `PASID-cache invalidation of every PASID in domain ${r.did}`;
    case "pasid-cache": return `PASID-cache invalidation of PASID ${r.pasid} in domain ${r.did}`;
    case "pasid-iotlb": return `PASID-based IOTLB invalidation of PASID ${r.pasid} in domain ${r.did}`;
    case "pasid-iotlb-page": return `PASID-based IOTLB invalidation of PASID ${r.pasid} in domain ${r.did} at 0x${r.address.toString(16)}, AM ${r.am}`;
  }
}
