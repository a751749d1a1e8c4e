/**
 * Devices and their context entries: attach points a source-id at a domain (TT 0, 1 with a
 * device-TLB, 2 pass-through), detach clears it; each with the invalidation it owes. Not-present
 * -> present under CM = 1: a device-selective context-cache invalidation with DID 0 and a
 * domain-selective IOTLB invalidation (CM = 0: a write-buffer flush). Present -> not-present: the
 * device's context entry, the domain's IOTLB entries and the endpoint's device-TLB. In scalable
 * mode the PASID-table and context entries are written by scalable-attachment.ts instead.
 */
import { TranslationType } from "../spec/entries.ts";
import { widestAw, type UnitCapabilities } from "./discovery.ts";
import type { Domain } from "./domain.ts";
import { bdf, VtdDriverError } from "./errors.ts";
import { deviceTlbEverything, type InvalidationRequest } from "./invalidation.ts";
import type { InvalidationSubmission } from "./invalidation-submission.ts";
import type { DriverRule } from "./options.ts";
import type { RootContextTables } from "./root-context-tables.ts";
import { ScalableModeTables } from "./pasid-tables.ts";
import { ScalableAttachment } from "./scalable-attachment.ts";

export interface AttachOptions {
  /** Context TT = 1: the endpoint caches translations (ATS); unmaps also invalidate its device-TLB. Needs ECAP.DT and the queue. */
  deviceTlb?: boolean;
  /** Context TT = 2: untranslated pass-through (ECAP.PT). */
  passThrough?: boolean;
}

interface Attachment {
  domain: Domain;
  deviceTlb: boolean;
  passThrough: boolean;
}

export class DeviceAttachments {
  private readonly attached = new Map<number, Attachment>();
  private rootContext: RootContextTables | undefined;
  /** Scalable mode: PASID and context entries are written there instead (scalable-attachment.ts). */
  private scalable: ScalableAttachment | undefined;

  constructor(
    private readonly caps: UnitCapabilities,
    private readonly submission: InvalidationSubmission,
    private readonly keeps: (rule: DriverRule) => boolean,
    /** The source-ids behind this unit (its DMAR device scope); undefined: every one (INCLUDE_PCI_ALL or no DMAR). */
    private readonly deviceScope: ReadonlySet<number> | undefined,
  ) {}

  /** Initialisation put the root table in place. */
  useTables(tables: RootContextTables | ScalableModeTables): void {
    if (tables instanceof ScalableModeTables) this.scalable = new ScalableAttachment(tables, this.caps, this.submission, this.keeps);
    else this.rootContext = tables;
  }

  /** `queued`: queued invalidation is on (a device-TLB needs it). */
  attach(sid: number, domain: Domain, options: AttachOptions, queued: boolean): void {
    this.checkSid(sid);
    if (this.attached.has(sid)) throw new VtdDriverError("already-attached", `device ${bdf(sid)} is already attached to domain ${this.attached.get(sid)!.domain.did}`);
    const deviceTlb = options.deviceTlb === true, passThrough = options.passThrough === true;
    if (deviceTlb && passThrough) throw new VtdDriverError("bad-argument", "deviceTlb and passThrough exclude each other");
    if (deviceTlb && (!this.caps.deviceTlb || !queued)) {
      throw new VtdDriverError("unsupported", `device ${bdf(sid)} with a device-TLB: needs ECAP.DT (${this.caps.deviceTlb ? 1 : 0}) and queued invalidation (${queued ? "on" : "off"})`);
    }
    if (passThrough && !this.caps.passThrough) throw new VtdDriverError("unsupported", "pass-through: ECAP.PT = 0");
    if (this.scalable) {
      this.scalable.attach(sid, domain, deviceTlb, passThrough);
      this.record(sid, domain, deviceTlb, passThrough);
      return;
    }
    const translationType = passThrough ? TranslationType.PassThrough : deviceTlb ? TranslationType.DeviceTlb : TranslationType.Untranslated;
    // Pass-through ignores the tables; AW is then the largest the unit supports (VT-d §9.3).
    const aw = passThrough ? widestAw(this.caps) : domain.aw;
    this.rootContext!.write(sid, { tableRoot: domain.tables.root, aw, did: domain.did, translationType });
    this.record(sid, domain, deviceTlb, passThrough);
    if (this.caps.cachingMode) {
      // Not-present -> present under CM: the unit may hold a not-present entry tagged with DID 0.
      if (this.keeps("cm-context-invalidation")) {
        this.submission.invalidate([{ kind: "context-device", did: 0, sid, fm: 0 }, { kind: "iotlb-domain", did: domain.did }]);
      }
    } else {
      this.submission.writeBufferFlush();
    }
  }

  detach(sid: number): void {
    this.checkSid(sid);
    const attachment = this.attached.get(sid);
    if (!attachment) throw new VtdDriverError("not-attached", `device ${bdf(sid)} is not attached`);
    const { domain } = attachment;
    this.attached.delete(sid);
    domain.devices.delete(sid);
    domain.deviceTlbDevices.delete(sid);
    if (this.scalable) return this.scalable.detach(sid, domain, attachment.deviceTlb);
    this.rootContext!.clear(sid);
    if (this.keeps("unmap-invalidation")) {
      const requests: InvalidationRequest[] = [{ kind: "context-device", did: domain.did, sid, fm: 0 }, { kind: "iotlb-domain", did: domain.did }];
      if (attachment.deviceTlb) requests.push(deviceTlbEverything(sid));
      this.submission.invalidate(requests);
    }
  }

  private record(sid: number, domain: Domain, deviceTlb: boolean, passThrough: boolean): void {
    this.attached.set(sid, { domain, deviceTlb, passThrough });
    domain.devices.add(sid);
    if (deviceTlb) domain.deviceTlbDevices.add(sid);
  }

  domainOf(sid: number): Domain | undefined {
    return this.attached.get(sid)?.domain;
  }

  private checkSid(sid: number): void {
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new VtdDriverError("bad-argument", `source-id ${String(sid)}: expected 0..0xffff`);
    if (this.deviceScope && !this.deviceScope.has(sid)) {
      throw new VtdDriverError("unknown-device", `device ${bdf(sid)} is not behind this unit (DMAR device scope: ${[...this.deviceScope].map(bdf).join(", ") || "none"})`);
    }
  }
}
