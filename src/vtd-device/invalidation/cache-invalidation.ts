/**
 * The cache operations every invalidation ends in, whichever interface asked for it: the
 * context-command and IOTLB registers (VT-d §6.5.1) or the invalidation queue (VT-d §6.5.2).
 * One path, so counting, tracing and the notifiers hook in one place.
 */
import { MAMV } from "../../spec/registers.ts";
import type { ContextCache } from "../caches/context-cache.ts";
import type { Iotlb } from "../caches/iotlb.ts";
import { INVALIDATION_KINDS, type DeviceStats, type InvalidationKind, type UnitCounters } from "../stats.ts";
import type { Tracer } from "../trace.ts";

export type InvalidationSource = "register" | "queue";

/**
 * Told of every invalidation after the caches dropped their entries (the IOMMU notifiers,
 * notifiers.ts). Called only while `active`, so nobody listening costs one field check.
 */
export interface InvalidationListener {
  readonly active: boolean;
  contextGlobal(): void;
  contextDomain(did: number): void;
  contextDevice(sid: number, functionMask: number): void;
  iotlbGlobal(): void;
  iotlbDomain(did: number): void;
  /** `span` bytes at `address` (aligned to the span). */
  iotlbPages(did: number, address: number, span: number): void;
  /** A device-TLB invalidation of [start, end) sent to endpoint `sid`. */
  deviceTlb(sid: number, start: number, end: number): void;
  /** Root table or translation enable changed, or reset. */
  everything(): void;
  /**
   * Scalable mode, told by the 256-bit descriptors' executor (scalable/wide-descriptors.ts) after the
   * unit's caches dropped what they name; optional, as only the notifiers act on them.
   * PASID-cache invalidation (VT-d 5.10 §6.5.2.2): granularity 0 domain, 1 PASID in the domain, 3 all.
   */
  pasidCacheInvalidated?(granularity: number, did: number, pasid: number): void;
  /**
   * PASID-based IOTLB invalidation (§6.5.2.4): `span` bytes at `address` (aligned to the span), or
   * the whole PASID (address 0, span Infinity); `leafOnly` is the descriptor's IH.
   */
  pasidIotlbInvalidated?(did: number, pasid: number, address: number, span: number, leafOnly: boolean): void;
}

const kind = (name: InvalidationKind): number => INVALIDATION_KINDS.indexOf(name);
const CONTEXT_GLOBAL = kind("context global"), CONTEXT_DOMAIN = kind("context domain"), CONTEXT_DEVICE = kind("context device");
const IOTLB_GLOBAL = kind("iotlb global"), IOTLB_DOMAIN = kind("iotlb domain"), IOTLB_PAGE = kind("iotlb page"), DEVICE_IOTLB = kind("device-iotlb");

export class Invalidation {
  /** The notifiers (set by the device). */
  listener: InvalidationListener | undefined;

  constructor(
    private readonly contextCache: ContextCache,
    private readonly iotlb: Iotlb,
    private readonly stats: DeviceStats,
    private readonly tracer: Tracer,
    private readonly counters: UnitCounters,
  ) {}

  /** One more invalidation of kind `kind` (an INVALIDATION_KINDS index) from `source`. */
  private count(kind: number, source: InvalidationSource): void {
    (source === "queue" ? this.counters.invalidations.queue : this.counters.invalidations.register)[kind]!++;
  }

  contextGlobal(source: InvalidationSource): void {
    this.stats.contextInvalidations.global++;
    this.count(CONTEXT_GLOBAL, source);
    this.contextCache.invalidateAll();
    if (this.listener?.active) this.listener.contextGlobal();
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "context", granularity: "global", source });
  }

  contextDomain(did: number, source: InvalidationSource): void {
    this.stats.contextInvalidations.domain++;
    this.count(CONTEXT_DOMAIN, source);
    this.contextCache.invalidateDomain(did);
    if (this.listener?.active) this.listener.contextDomain(did);
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "context", granularity: "domain", source, did });
  }

  /** Device-selective: by source-id and function mask; the DID is not needed to find the entries. */
  contextDevice(sid: number, functionMask: number, did: number, source: InvalidationSource): void {
    this.stats.contextInvalidations.device++;
    this.count(CONTEXT_DEVICE, source);
    this.contextCache.invalidateDevice(sid, functionMask);
    if (this.listener?.active) this.listener.contextDevice(sid, functionMask);
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "context", granularity: "device", source, sid, fm: functionMask, did });
  }

  iotlbGlobal(source: InvalidationSource): void {
    this.stats.iotlbInvalidations.global++;
    this.count(IOTLB_GLOBAL, source);
    this.iotlb.invalidateAll();
    if (this.listener?.active) this.listener.iotlbGlobal();
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "iotlb", granularity: "global", source });
  }

  iotlbDomain(did: number, source: InvalidationSource): void {
    this.stats.iotlbInvalidations.domain++;
    this.count(IOTLB_DOMAIN, source);
    this.iotlb.invalidateDomain(did);
    if (this.listener?.active) this.listener.iotlbDomain(did);
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "iotlb", granularity: "domain", source, did });
  }

  /** Page-selective within a domain: 2^am pages at `address`, aligned down to the mask. */
  iotlbPages(did: number, address: number, am: number, invalidationHint: boolean, source: InvalidationSource): void {
    this.stats.iotlbInvalidations.page++;
    this.count(IOTLB_PAGE, source);
    // AM ≤ MAMV (18), so the span is at most 2^30 and the offset lies in the low 32 bits: found
    // with integer operations, not a floating-point modulo (a C call for addresses above 2^31).
    const span = am <= MAMV ? 4096 * (1 << am) : 2 ** (12 + am);
    const base = am <= MAMV ? address - ((address >>> 0) & (span - 1)) : address - (address % span);
    this.iotlb.invalidatePages(did, base, am);
    if (this.listener?.active) this.listener.iotlbPages(did, base, span);
    if (this.tracer.active) {
      this.tracer.emit({ type: "vtd_inv", cache: "iotlb", granularity: "page", source, did, address: BigInt(base), am, ih: invalidationHint });
    }
  }

  /** Root table or translation enable changed: nothing cached may survive. */
  everything(): void {
    this.contextCache.invalidateAll();
    this.iotlb.invalidateAll();
    if (this.listener?.active) this.listener.everything();
  }

  /** A device-TLB invalidation of [start, end) sent to endpoint `sid` (VT-d §6.5.2.5); the endpoint answers later. */
  deviceTlb(sid: number, start: number, end: number, source: InvalidationSource): void {
    this.stats.deviceIotlbInvalidations++;
    this.count(DEVICE_IOTLB, source);
    if (this.listener?.active) this.listener.deviceTlb(sid, start, end);
    if (this.tracer.active) this.tracer.emit({ type: "vtd_inv", cache: "device-iotlb", granularity: `${end - start} bytes`, source, sid, address: BigInt(start) });
  }
}
