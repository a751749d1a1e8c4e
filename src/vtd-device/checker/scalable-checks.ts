/**
 * The strict checker in scalable mode (RTADDR.TTM = 01): before the unit translates a request,
 * what its scalable caches hold for it is compared with what the tables give now.
 *
 * - The PASID cache (VT-d §6.2.2): the entry for (source-id, request PASID) against a fresh walk
 *   to the PASID-table entry. A cached present entry that differs (another DID, PGTT, table,
 *   FPD...) or that the tables no longer give is stale-cache; a cached fault (caching mode) whose
 *   entry is now present is missing-cm-invalidation: CM = 1 governs the PASID structures, so
 *   making one present owes a PASID-cache invalidation (VT-d §6.1). Either is covered by a
 *   PASID-selective PASID-cache invalidation (VT-d §6.5.2.2).
 * - The scalable IOTLB (VT-d §6.2.4), for the PASID entry the unit is about to use: the entry for
 *   (DID, PASID, page) against a walk of the entry's stage. Second stage: another output page or
 *   other R/W is stale-cache, a cached fault whose page is now accessible (CM = 1) is
 *   missing-cm-invalidation; covered by a page-selective IOTLB invalidation (VT-d §6.5.2.3).
 *   First stage: another output page or other R/W/U/S is stale-cache, covered by a PASID-based
 *   IOTLB invalidation of the page (VT-d §6.5.2.4). First-stage faults are never cached (CM does
 *   not govern them), so a first-stage map never owes an invalidation and is never reported.
 *
 * Reads memory only: the first-stage reference walk goes through a view that drops the Accessed /
 * Dirty writes a walk would make. Nothing here allocates unless a report is made.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { LEVEL_SIZE, awWidth } from "../../spec/entries.ts";
import { PasidGranularTranslationType } from "../../spec/scalable.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { FirstStageWalk } from "../scalable/first-stage-walk.ts";
import { MAY_READ, MAY_USER, MAY_WRITE } from "../scalable/scalable-caches.ts";
import type { ScalableTranslation } from "../scalable/scalable-translation.ts";
import { ScalableWalk, walkPasidEntry } from "../scalable/scalable-walk.ts";
import { PageWalk, walkPages } from "../translation/walk.ts";
import { bigintsAsHex, hex, sourceIdText, translationView, type DriverBugKind, type EntryView, type MissingAction, type PasidEntryView, type TranslationView } from "./checker-report.ts";

/** Where a finding goes: DriverChecker's report (deduplicated by `key`). */
export type Reporter = (kind: DriverBugKind, sid: number, address: number, write: boolean, cached: EntryView, current: EntryView, missing: MissingAction, key: string) => void;

/** Guest memory read as the unit reads it; writes (A/D updates of a reference walk) go nowhere. */
class ReadOnlyAccess extends MemoryAccess {
  override write32(): boolean {
    return true;
  }
}

const FIRST_STAGE = PasidGranularTranslationType.FirstStage;
const SECOND_STAGE = PasidGranularTranslationType.SecondStage;
const PASS_THROUGH = PasidGranularTranslationType.PassThrough;
/** The permission bits both stages cache and the tables decide (not the Dirty flag the unit set). */
const COMPARED = MAY_READ | MAY_WRITE | MAY_USER;

export class ScalableChecks {
  private readonly memory: ReadOnlyAccess;
  private readonly fresh = new ScalableWalk();
  private readonly cached = new ScalableWalk();
  private readonly pages = new PageWalk();
  private readonly firstStage = new FirstStageWalk();
  /** The reference walk's outcome for the request's page: permission (MAY_*) and output page; level. */
  private permission = 0;
  private output = 0;
  private level = 1;

  constructor(
    memory: GuestMemory,
    private readonly cfg: WalkConfig,
    private readonly cachingMode: boolean,
    private readonly report: Reporter,
  ) {
    this.memory = new ReadOnlyAccess(memory);
  }

  inspect(scalable: ScalableTranslation, sid: number, address: number, write: boolean, rootTable: number): void {
    const requestPasid = scalable.requestPasid;
    const fresh = walkPasidEntry(this.memory, rootTable, sid, requestPasid, scalable.walkCfg, this.fresh);
    const caches = scalable.caches;
    const slot = caches.pasidCache.lookup(sid, requestPasid);
    if (slot >= 0) {
      const cached = caches.pasidCache.load(slot, this.cached);
      if (!samePasidEntry(cached, fresh)) {
        this.reportPasidEntry(sid, address, write, cached, fresh);
        return;
      }
      if (cached.reason !== 0) return; // a negative entry the tables agree with: the unit faults as they say
    } else if (fresh.reason !== 0) {
      return; // the unit walks too and faults the same way
    }
    const pgtt = fresh.pgtt;
    if (pgtt === PASS_THROUGH || (pgtt !== FIRST_STAGE && pgtt !== SECOND_STAGE)) return;
    const privileged = scalable.requestPrivileged || (requestPasid < 0 && fresh.ridPrivileged);
    if (pgtt === FIRST_STAGE && privileged && !fresh.supervisorRequests) return;
    const tlb = caches.iotlb;
    const page = Math.floor(address / 4096);
    if (!tlb.lookup(fresh.did, fresh.pasid, page)) return; // a miss: the unit walks what the reference walks
    const negative = tlb.hitNegative !== 0;
    const usedPermission = negative ? 0 : tlb.hitPermission & COMPARED;
    const usedOutput = negative ? 0 : tlb.hitOutput;
    this.reference(fresh, address);
    if (usedPermission === this.permission && (usedPermission === 0 || usedOutput === this.output)) return;
    const firstStage = pgtt === FIRST_STAGE;
    const kind: DriverBugKind = usedPermission === 0 && this.cachingMode && !firstStage ? "missing-cm-invalidation" : "stale-cache";
    const base = page * 4096;
    const missing: MissingAction = firstStage ? {
      action: "pasid-iotlb-invalidation", granularity: "page", did: fresh.did, pasid: fresh.pasid, address: BigInt(base), am: 0,
      text: `PASID-based IOTLB invalidation (VT-d §6.5.2.4) DID ${fresh.did} PASID ${fresh.pasid} addr ${hex(base)} AM 0`,
    } : {
      action: "iotlb-invalidation", granularity: "page", did: fresh.did, address: BigInt(base), am: 0,
      text: `page-selective IOTLB invalidation (VT-d §6.5.2.3) DID ${fresh.did} addr ${hex(base)} AM 0`,
    };
    const used: TranslationView = translationView("iotlb-entry", usedPermission, usedOutput, 1, negative ? (write ? tlb.hitNegative >>> 8 : tlb.hitNegative & 0xff) : 0);
    const current = translationView("paging-entries", this.permission, this.output, this.level, 0);
    this.report(kind, sid, address, write, used, current, missing,
      `sm-iotlb|${fresh.did}|${fresh.pasid}|${page}|${usedPermission}@${usedOutput}|${this.permission}@${this.output}`);
  }

  /** What the tables map at the request's page through the PASID entry `w` (permission 0: nothing). */
  private reference(w: ScalableWalk, address: number): void {
    this.permission = 0;
    this.output = 0;
    this.level = 1;
    if (w.pgtt === SECOND_STAGE) {
      if (address >= 2 ** Math.min(this.cfg.awBits, awWidth(w.aw))) return;
      const pages = walkPages(this.memory, w.secondStageRoot, w.aw, address, this.cfg, this.pages);
      this.level = pages.level;
      if (pages.structural !== 0) return;
      this.permission = pages.permission & (MAY_READ | MAY_WRITE);
      this.output = pages.pageOutput + (address % LEVEL_SIZE[pages.level]!) - (address % 4096);
      return;
    }
    // A supervisor read finds any present leaf; its R/W and U/S say what every access may do.
    const fs = this.firstStage;
    if (fs.walk(this.memory, w.firstStageRoot, this.cfg.awBits, address, false, false, false, w.executeDisable, true) !== 0) return;
    this.level = fs.level;
    this.permission = MAY_READ | (fs.writable ? MAY_WRITE : 0) | (fs.userAllowed ? MAY_USER : 0);
    this.output = fs.pageOutput + (address % LEVEL_SIZE[fs.level]!) - (address % 4096);
  }

  private reportPasidEntry(sid: number, address: number, write: boolean, cached: ScalableWalk, fresh: ScalableWalk): void {
    const kind: DriverBugKind = cached.reason !== 0 && this.cachingMode ? "missing-cm-invalidation" : "stale-cache";
    // The entry the invalidation must name: the one cached when it was present, else the one now present.
    const named = cached.reason === 0 ? cached : fresh;
    const did = named.did, pasid = named.pasid;
    const missing: MissingAction = {
      action: "pasid-cache-invalidation", granularity: "pasid", did, pasid,
      text: `PASID-selective PASID-cache invalidation (VT-d §6.5.2.2) DID ${did} PASID ${pasid} of device ${sourceIdText(sid)}`,
    };
    const before = pasidView(cached), now = pasidView(fresh);
    this.report(kind, sid, address, write, before, now, missing, `pasid|${sid}|${JSON.stringify(before, bigintsAsHex)}|${JSON.stringify(now, bigintsAsHex)}`);
  }
}

/** Both fault, or both give the same PASID-table entry (as the unit uses it). */
function samePasidEntry(a: ScalableWalk, b: ScalableWalk): boolean {
  if (a.reason !== 0 || b.reason !== 0) return a.reason !== 0 && b.reason !== 0;
  return a.pasid === b.pasid && a.did === b.did && a.pgtt === b.pgtt && a.faultProcessingDisable === b.faultProcessingDisable &&
    a.ridPrivileged === b.ridPrivileged && a.supervisorRequests === b.supervisorRequests && a.writeProtect === b.writeProtect &&
    a.executeDisable === b.executeDisable && stageRoot(a) === stageRoot(b) && (a.pgtt !== SECOND_STAGE || a.aw === b.aw);
}

function stageRoot(w: ScalableWalk): number {
  return w.pgtt === FIRST_STAGE ? w.firstStageRoot : w.pgtt === SECOND_STAGE ? w.secondStageRoot : 0;
}

function pasidView(w: ScalableWalk): PasidEntryView {
  const present = w.reason === 0;
  return {
    structure: "pasid-entry", present, ...(present ? {} : { fault: w.reason as FaultReason }), pasid: w.pasid,
    did: present ? w.did : 0, pgtt: present ? w.pgtt : 0, tableRoot: BigInt(present ? stageRoot(w) : 0), fpd: w.faultProcessingDisable,
  };
}
