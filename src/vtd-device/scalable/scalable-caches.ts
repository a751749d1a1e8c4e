/**
 * Scalable mode's caches (VT-d 5.10 §6.2.2-§6.2.4), bounded and direct mapped, allocation-free:
 * - the PASID cache: what the walk to a PASID-table entry found (context, directory and PASID
 *   entry together), tagged with the source-id, the request's PASID (or none: RID_PASID), the
 *   effective PASID and the DID of the PASID entry; under caching mode also a walk that faulted
 *   (a negative entry: its reason, no DID, and the PASID when the walk got that far);
 * - the scalable IOTLB: 4 KiB translations tagged with DID, PASID and page, with the permissions
 *   the walk found; under caching mode also a faulting second-stage walk (a negative entry holding
 *   the reason a read and a write get). First-stage faults are never kept
 *   (caches/caching-policy.ts, cachesScalableFault).
 * Invalidation (the one path, invalidation/cache-invalidation.ts, reaches them as a listener, and
 * the PASID descriptors directly) may drop more than asked, as the spec allows; never less.
 */
import type { InvalidationListener } from "../invalidation/cache-invalidation.ts";
import { NO_PASID } from "../../spec/scalable.ts";
import { PASID_INVALIDATION_KINDS, type UnitCounters } from "../stats.ts";
import type { ScalableWalk } from "./scalable-walk.ts";

const PASID_CACHE_ENTRIES = 256;
const PASID_CACHE = PASID_INVALIDATION_KINDS.indexOf("pasid-cache");
const PASID_IOTLB = PASID_INVALIDATION_KINDS.indexOf("pasid-iotlb");
const IOTLB_ENTRIES = 1024;

/** The DID of a negative PASID-cache entry: none known. */
const NO_DID = -1;
/** Flags kept per PASID-cache entry. */
const FPD = 1, RID_PRIV = 2, SRE = 4, WPE = 8, NXE = 16;

export class PasidCache {
  /** sid + 1 (0: empty) and request PASID + 2 (1: a request without PASID). */
  private readonly tagSid = new Int32Array(PASID_CACHE_ENTRIES);
  private readonly tagPasid = new Int32Array(PASID_CACHE_ENTRIES);
  readonly pasid = new Int32Array(PASID_CACHE_ENTRIES);
  readonly did = new Int32Array(PASID_CACHE_ENTRIES);
  readonly pgtt = new Uint8Array(PASID_CACHE_ENTRIES);
  readonly aw = new Uint8Array(PASID_CACHE_ENTRIES);
  readonly flags = new Uint8Array(PASID_CACHE_ENTRIES);
  readonly secondStageRoot = new Float64Array(PASID_CACHE_ENTRIES);
  readonly firstStageRoot = new Float64Array(PASID_CACHE_ENTRIES);
  /** A negative entry's fault reason (0: a usable PASID-table entry). */
  readonly reason = new Uint8Array(PASID_CACHE_ENTRIES);
  count = 0;

  private slot(sid: number, requestPasid: number): number {
    return (sid ^ (sid >>> 8) ^ Math.imul(requestPasid + 2, 0x9e37)) & (PASID_CACHE_ENTRIES - 1);
  }

  lookup(sid: number, requestPasid: number): number {
    const i = this.slot(sid, requestPasid);
    return this.tagSid[i] === sid + 1 && this.tagPasid[i] === requestPasid + 2 ? i : -1;
  }

  fill(sid: number, requestPasid: number, w: ScalableWalk): number {
    const i = this.slot(sid, requestPasid);
    if (this.tagSid[i] === 0) this.count++;
    this.tagSid[i] = sid + 1;
    this.tagPasid[i] = requestPasid + 2;
    this.pasid[i] = w.pasid;
    this.did[i] = w.did;
    this.pgtt[i] = w.pgtt;
    this.aw[i] = w.aw;
    this.secondStageRoot[i] = w.secondStageRoot;
    this.firstStageRoot[i] = w.firstStageRoot;
    this.flags[i] = (w.faultProcessingDisable ? FPD : 0) | (w.ridPrivileged ? RID_PRIV : 0) | (w.supervisorRequests ? SRE : 0)
      | (w.writeProtect ? WPE : 0) | (w.executeDisable ? NXE : 0);
    this.reason[i] = 0;
    return i;
  }

  /**
   * A walk that faulted with `w.reason` (caching mode): kept with its reason and FPD, no DID (any
   * domain-selective invalidation drops it) and the PASID the walk reached (NO_PASID when it
   * stopped before the context entry named one: any PASID-selective invalidation drops it).
   */
  fillNegative(sid: number, requestPasid: number, w: ScalableWalk): void {
    const i = this.fill(sid, requestPasid, w);
    this.did[i] = NO_DID;
    this.pgtt[i] = 0;
    this.flags[i] = w.faultProcessingDisable ? FPD : 0;
    this.reason[i] = w.reason;
  }

  /** The cached entry back into a walk result (the translation reads it from there). */
  load(i: number, out: ScalableWalk): ScalableWalk {
    const f = this.flags[i]!;
    out.reason = this.reason[i]!;
    out.pasid = this.pasid[i]!;
    out.did = this.did[i]!;
    out.pgtt = this.pgtt[i]!;
    out.aw = this.aw[i]!;
    out.secondStageRoot = this.secondStageRoot[i]!;
    out.firstStageRoot = this.firstStageRoot[i]!;
    out.faultProcessingDisable = (f & FPD) !== 0;
    out.ridPrivileged = (f & RID_PRIV) !== 0;
    out.supervisorRequests = (f & SRE) !== 0;
    out.writeProtect = (f & WPE) !== 0;
    out.executeDisable = (f & NXE) !== 0;
    return out;
  }

  invalidateAll(): void {
    this.tagSid.fill(0);
    this.count = 0;
  }

  /** Entries of domain `did`, and every negative entry (its domain is unknown). */
  invalidateDomain(did: number): void {
    for (let i = 0; i < PASID_CACHE_ENTRIES; i++) if (this.tagSid[i] !== 0 && (this.did[i] === did || this.did[i] === NO_DID)) this.clear(i);
  }

  /** Entries of `pasid` in domain `did`, and negative entries of that PASID (or of an unknown one). */
  invalidatePasid(did: number, pasid: number): void {
    for (let i = 0; i < PASID_CACHE_ENTRIES; i++) {
      if (this.tagSid[i] === 0) continue;
      const negative = this.did[i] === NO_DID;
      if ((this.did[i] === did || negative) && (this.pasid[i] === pasid || (negative && this.pasid[i] === NO_PASID))) this.clear(i);
    }
  }

  /** Device-selective with the function mask (FM as CCMD, VT-d §11.4.7.1). */
  invalidateDevice(sid: number, functionMask: number): void {
    const ignore = functionMask === 0 ? 0 : ((1 << functionMask) - 1) << (3 - functionMask);
    for (let i = 0; i < PASID_CACHE_ENTRIES; i++) if (this.tagSid[i] !== 0 && ((this.tagSid[i]! - 1) & ~ignore) === (sid & ~ignore)) this.clear(i);
  }

  private clear(i: number): void {
    this.tagSid[i] = 0;
    this.count--;
  }
}

/**
 * Permission bits of a scalable IOTLB entry: second stage R and W; first stage R/W and U/S set at
 * every level, and whether the unit has set the leaf's Dirty flag (a write without it walks again).
 */
export const MAY_READ = 1, MAY_WRITE = 2, MAY_USER = 4, DIRTY_SET = 8;

/** Page-selective invalidations of one PASID up to this many pages look at each page's slot instead of every slot. */
const PROBE_PAGES = 64;

export class ScalableIotlb {
  /** did + 1 (0: empty), PASID, page number (address / 4096). */
  private readonly tagDid = new Int32Array(IOTLB_ENTRIES);
  private readonly tagPasid = new Int32Array(IOTLB_ENTRIES);
  private readonly tagPage = new Float64Array(IOTLB_ENTRIES);
  private readonly output = new Float64Array(IOTLB_ENTRIES);
  private readonly permission = new Uint8Array(IOTLB_ENTRIES);
  /** A negative entry (caching mode, second stage): the reason a read gets in bits 7:0, a write in 15:8; 0 for a translation. */
  private readonly negative = new Uint16Array(IOTLB_ENTRIES);
  /** Live entries per domain id, so an invalidation of an empty domain costs nothing. */
  private readonly liveInDomain = new Int32Array(65536);
  count = 0;
  /** Output page, permissions and negative reasons of the last hit. */
  hitOutput = 0;
  hitPermission = 0;
  hitNegative = 0;

  private slot(did: number, pasid: number, page: number): number {
    return ((page >>> 0) ^ Math.imul(did, 0x45d9f3b) ^ Math.imul(pasid, 0x27d4eb2d)) & (IOTLB_ENTRIES - 1);
  }

  lookup(did: number, pasid: number, page: number): boolean {
    const i = this.slot(did, pasid, page);
    if (this.tagDid[i] !== did + 1 || this.tagPasid[i] !== pasid || this.tagPage[i] !== page) return false;
    this.hitOutput = this.output[i]!;
    this.hitPermission = this.permission[i]!;
    this.hitNegative = this.negative[i]!;
    return true;
  }

  /** A faulting second-stage walk of the page (caching mode): what a read and a write get, until invalidated. */
  fillNegative(did: number, pasid: number, page: number, readReason: number, writeReason: number): void {
    this.fill(did, pasid, page, 0, 0);
    this.negative[this.slot(did, pasid, page)] = readReason | (writeReason << 8);
  }

  fill(did: number, pasid: number, page: number, outputPage: number, permission: number): void {
    const i = this.slot(did, pasid, page);
    if (this.tagDid[i] === 0) this.count++;
    else this.liveInDomain[this.tagDid[i]! - 1]!--;
    this.liveInDomain[did & 0xffff]!++;
    this.tagDid[i] = did + 1;
    this.tagPasid[i] = pasid;
    this.tagPage[i] = page;
    this.output[i] = outputPage;
    this.permission[i] = permission;
    this.negative[i] = 0;
  }

  invalidateAll(): void {
    this.tagDid.fill(0);
    this.liveInDomain.fill(0);
    this.count = 0;
  }

  /** Entries of a domain (any PASID), or of pages [first, first + pages) in it; `pasid` ≥ 0 narrows to one PASID. */
  invalidate(did: number, pasid: number, first: number, pages: number): void {
    if (this.liveInDomain[did & 0xffff] === 0) return;
    // A few pages of one PASID: each page has one slot to look at.
    if (pasid >= 0 && pages <= PROBE_PAGES) {
      for (let page = first; page < first + pages; page++) {
        const i = this.slot(did, pasid, page);
        if (this.tagDid[i] === did + 1 && this.tagPasid[i] === pasid && this.tagPage[i] === page) this.drop(i);
      }
      return;
    }
    for (let i = 0; i < IOTLB_ENTRIES; i++) {
      if (this.tagDid[i] !== did + 1) continue;
      if (pasid >= 0 && this.tagPasid[i] !== pasid) continue;
      const page = this.tagPage[i]!;
      if (page < first || page >= first + pages) continue;
      this.drop(i);
    }
  }

  private drop(i: number): void {
    this.liveInDomain[this.tagDid[i]! - 1]!--;
    this.tagDid[i] = 0;
    this.count--;
  }
}

/**
 * Both caches as the invalidation path sees them: context-cache invalidations drop PASID-cache
 * entries (a scalable-mode context entry has no DID: domain-selective drops everything), IOTLB
 * invalidations drop scalable IOTLB entries by DID (every PASID), and the notifiers' listener
 * (if any) is told afterwards as before.
 */
export class ScalableCaches implements InvalidationListener {
  readonly pasidCache = new PasidCache();
  readonly iotlb = new ScalableIotlb();

  /** `counters.pasidInvalidations` counts the PASID descriptors executed. */
  constructor(private readonly counters: UnitCounters) {}

  /** The listener told after these caches (the notifiers), as Invalidation told it before. */
  next: InvalidationListener | undefined = undefined;
  readonly active = true;

  /** Puts these caches in front of `listener` on the invalidation path; returns the new listener. */
  before(listener: InvalidationListener): InvalidationListener {
    this.next = listener;
    return this;
  }

  contextGlobal(): void {
    this.pasidCache.invalidateAll();
    if (this.next?.active) this.next.contextGlobal();
  }
  contextDomain(did: number): void {
    this.pasidCache.invalidateAll();
    if (this.next?.active) this.next.contextDomain(did);
  }
  contextDevice(sid: number, functionMask: number): void {
    this.pasidCache.invalidateDevice(sid, functionMask);
    if (this.next?.active) this.next.contextDevice(sid, functionMask);
  }
  iotlbGlobal(): void {
    this.iotlb.invalidateAll();
    if (this.next?.active) this.next.iotlbGlobal();
  }
  iotlbDomain(did: number): void {
    this.iotlb.invalidate(did, -1, 0, Infinity);
    if (this.next?.active) this.next.iotlbDomain(did);
  }
  iotlbPages(did: number, address: number, span: number): void {
    this.iotlb.invalidate(did, -1, Math.floor(address / 4096), span / 4096);
    if (this.next?.active) this.next.iotlbPages(did, address, span);
  }
  deviceTlb(sid: number, start: number, end: number): void {
    if (this.next?.active) this.next.deviceTlb(sid, start, end);
  }
  everything(): void {
    this.pasidCache.invalidateAll();
    this.iotlb.invalidateAll();
    if (this.next?.active) this.next.everything();
  }

  /** PASID-cache invalidation descriptor (§6.5.2.2): G 00 domain, 01 PASID in domain, 11 global. */
  pasidCacheDescriptor(granularity: number, did: number, pasid: number): void {
    this.counters.pasidInvalidations[PASID_CACHE]!++;
    if (granularity === 0) this.pasidCache.invalidateDomain(did);
    else if (granularity === 1) this.pasidCache.invalidatePasid(did, pasid);
    else this.pasidCache.invalidateAll();
  }

  /** PASID-based IOTLB invalidation (§6.5.2.4): G 10 the PASID in the domain, 11 2^AM pages from ADDR of it. */
  pasidIotlbDescriptor(page: boolean, did: number, pasid: number, address: number, am: number): void {
    this.counters.pasidInvalidations[PASID_IOTLB]!++;
    if (!page) this.iotlb.invalidate(did, pasid, 0, Infinity);
    else this.iotlb.invalidate(did, pasid, Math.floor(address / 4096 / 2 ** am) * 2 ** am, 2 ** am);
  }
}
