/**
 * Attaching a device in scalable mode, in Linux 6.1's order: first the PASID-table entry of
 * RID_PASID (PGTT first-stage, second-stage or pass-through, the domain's DID), then the context
 * entry pointing at the device's PASID directory. Each not-present -> present change owes, under
 * CM = 1 (which governs the PASID structures and context entries, VT-d §6.1): after the PASID
 * entry a PASID-selective PASID-cache invalidation and a PASID-based IOTLB invalidation of the
 * PASID; after the context entry a device-selective context-cache invalidation with DID 0 and a
 * domain-selective IOTLB invalidation. CM = 0: a write-buffer flush after each.
 * Detach undoes it in the same order (Linux 6.1's intel_pasid_tear_down_entry, then
 * domain_context_clear_one): the PASID entry cleared, then PASID cache, the PASID's IOTLB entries
 * (PASID-based for first stage and pass-through, domain-selective for second stage) and the
 * endpoint's device-TLB; then the context entry, its context-cache entry, the domain's PASID-cache
 * entries of every PASID (§6.5.2.2 G = 00: what the context entry led to) and its IOTLB entries.
 */
import { PasidGranularTranslationType } from "../spec/scalable.ts";
import { widestAw, type UnitCapabilities } from "./discovery.ts";
import { RID_PASID, type Domain } from "./domain.ts";
import { deviceTlbEverything, type InvalidationRequest } from "./invalidation.ts";
import type { InvalidationSubmission } from "./invalidation-submission.ts";
import type { DriverRule } from "./options.ts";
import type { ScalableModeTables } from "./pasid-tables.ts";

export class ScalableAttachment {
  constructor(
    private readonly tables: ScalableModeTables,
    private readonly caps: UnitCapabilities,
    private readonly submission: InvalidationSubmission,
    private readonly keeps: (rule: DriverRule) => boolean,
  ) {}

  attach(sid: number, domain: Domain, deviceTlb: boolean, passThrough: boolean): void {
    const pgtt = passThrough ? PasidGranularTranslationType.PassThrough
      : domain.stage === "first" ? PasidGranularTranslationType.FirstStage : PasidGranularTranslationType.SecondStage;
    const aw = pgtt === PasidGranularTranslationType.SecondStage ? domain.aw : widestAw(this.caps);
    this.tables.writePasidEntry(sid, RID_PASID, { pgtt, did: domain.did, aw, tableRoot: domain.tables.root });
    if (this.caps.cachingMode) {
      if (this.keeps("cm-pasid-invalidation")) {
        this.submission.invalidate([{ kind: "pasid-cache", did: domain.did, pasid: RID_PASID }, { kind: "pasid-iotlb", did: domain.did, pasid: RID_PASID }]);
      }
    } else {
      this.submission.writeBufferFlush();
    }
    this.tables.writeContext(sid, RID_PASID, deviceTlb);
    if (this.caps.cachingMode) {
      if (this.keeps("cm-context-invalidation")) {
        this.submission.invalidate([{ kind: "context-device", did: 0, sid, fm: 0 }, { kind: "iotlb-domain", did: domain.did }]);
      }
    } else {
      this.submission.writeBufferFlush();
    }
  }

  detach(sid: number, domain: Domain, deviceTlb: boolean): void {
    const entry = this.tables.readPasidEntry(sid, RID_PASID);
    this.tables.clearPasidEntry(sid, RID_PASID);
    const keep = this.keeps("unmap-invalidation");
    if (keep && entry?.present) {
      const requests: InvalidationRequest[] = [{ kind: "pasid-cache", did: entry.did, pasid: RID_PASID }];
      requests.push(entry.pgtt === PasidGranularTranslationType.SecondStage ? { kind: "iotlb-domain", did: entry.did } : { kind: "pasid-iotlb", did: entry.did, pasid: RID_PASID });
      if (deviceTlb) requests.push(deviceTlbEverything(sid));
      this.submission.invalidate(requests);
    }
    this.tables.clearContext(sid);
    if (keep) {
      this.submission.invalidate([
        { kind: "context-device", did: domain.did, sid, fm: 0 }, { kind: "pasid-cache-domain", did: domain.did }, { kind: "iotlb-domain", did: domain.did },
      ]);
    }
  }
}
