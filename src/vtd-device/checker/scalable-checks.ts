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
 * The caches are compared with the tables as the unit would read them now: through its write
 * buffer (CAP.RWBF) and the CPU caches it does not snoop (ECAP.C = 0 with cacheLineFlushes), so an
 * invalidation is named only where it would change what the unit uses. Where those views hide a
 * store the CPU made from the unit's walk for the request (its PASID-table entry or its page's
 * translation comes out otherwise), the first entry on the walk that differs is named with the
 * flush it needs: unflushed-table-write (a CLFLUSH of its line) or missing-write-buffer-flush
 * (GCMD.WBF), as legacy mode's checker does (checker.ts).
 *
 * Reads only: the walks go through views that drop the Accessed / Dirty writes a walk would make.
 * Nothing here allocates unless a report is made (the record of a walk's reads grows once).
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { LEVEL_SIZE, awWidth } from "../../spec/entries.ts";
import { PasidGranularTranslationType } from "../../spec/scalable.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { LINE, type LineCopies } from "../memory/line-copies.ts";
import { FirstStageWalk } from "../scalable/first-stage-walk.ts";
import { MAY_READ, MAY_USER, MAY_WRITE } from "../scalable/scalable-caches.ts";
import type { ScalableTranslation } from "../scalable/scalable-translation.ts";
import { ScalableWalk, walkPasidEntry } from "../scalable/scalable-walk.ts";
import { PageWalk, walkPages } from "../translation/walk.ts";
import {
  bigintsAsHex, hex, sourceIdText, translationView, type DriverBugKind, type EntryView, type MissingAction, type PasidEntryView, type RawEntryView,
  type TranslationView,
} from "./checker-report.ts";

/** Where a finding goes: DriverChecker's report (deduplicated by `key`). */
export type Reporter = (kind: DriverBugKind, sid: number, address: number, write: boolean, cached: EntryView, current: EntryView, missing: MissingAction, key: string) => void;

/**
 * Guest memory read through `layers` (line copies, front first; none: memory as the CPU stored it),
 * recording each dword's address while `recording`; writes (A/D updates of a walk) go nowhere.
 */
class ReadOnlyAccess extends MemoryAccess {
  readonly reads: number[] = [];
  recording = false;

  constructor(memory: GuestMemory, private readonly layers: readonly LineCopies[] = []) {
    super(memory);
  }

  override read32(address: number): number {
    if (this.recording) this.reads.push(address);
    for (let i = 0; i < this.layers.length; i++) {
      const copy = this.layers[i]!.copied(address);
      if (copy !== undefined) return copy;
    }
    return super.read32(address);
  }

  override write32(): boolean {
    return true;
  }
}

/** The unit's line copies in front of memory (checker.ts passes the unit's). */
export interface UnitTableViews {
  cpuCaches: LineCopies | undefined;
  writeBuffer: LineCopies | undefined;
}

/** Reads of walkPasidEntry before the PASID-table entry: root entry (2 dwords), context entry (8), PASID-directory entry (2). */
const ROOT_READS = 2, CONTEXT_READS = 10, DIRECTORY_READS = 12;

const FIRST_STAGE = PasidGranularTranslationType.FirstStage;
const SECOND_STAGE = PasidGranularTranslationType.SecondStage;
const PASS_THROUGH = PasidGranularTranslationType.PassThrough;
/** The permission bits both stages cache and the tables decide (not the Dirty flag the unit set). */
const COMPARED = MAY_READ | MAY_WRITE | MAY_USER;

export class ScalableChecks {
  /** The tables as the unit reads them (memory behind its line copies). */
  private readonly memory: ReadOnlyAccess;
  /** The tables as the CPU stored them; undefined when the unit has no line copies. */
  private readonly cpu: ReadOnlyAccess | undefined;
  private readonly views: UnitTableViews;
  private readonly fresh = new ScalableWalk();
  private readonly cpuWalk = new ScalableWalk();
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
    views: UnitTableViews = { cpuCaches: undefined, writeBuffer: undefined },
  ) {
    this.views = views;
    const layers = [views.cpuCaches, views.writeBuffer].filter((v): v is LineCopies => v !== undefined);
    this.memory = new ReadOnlyAccess(memory, layers);
    this.cpu = layers.length > 0 ? new ReadOnlyAccess(memory) : undefined;
  }

  inspect(scalable: ScalableTranslation, sid: number, address: number, write: boolean, rootTable: number): void {
    this.checkCaches(scalable, sid, address, write, rootTable);
    if (this.cpu) this.checkFlushes(scalable, sid, address, write, rootTable, this.cpu);
  }

  private checkCaches(scalable: ScalableTranslation, sid: number, address: number, write: boolean, rootTable: number): void {
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
    this.reference(this.memory, fresh, address);
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

  /**
   * The unit's walk for the request (its PASID-table entry, then its page) read through its line
   * copies against the same walk of memory as the CPU stored it; where they differ, the first
   * entry on the unit's walk whose bytes differ, and the flush that would show it to the unit.
   */
  private checkFlushes(scalable: ScalableTranslation, sid: number, address: number, write: boolean, rootTable: number, cpu: ReadOnlyAccess): void {
    const unit = this.memory;
    unit.reads.length = 0;
    unit.recording = true;
    const seen = walkPasidEntry(unit, rootTable, sid, scalable.requestPasid, scalable.walkCfg, this.fresh);
    const entryReads = unit.reads.length;
    // Paging entries only behind a usable first- or second-stage entry (pass-through has none).
    const paged = seen.reason === 0 && (seen.pgtt === FIRST_STAGE || seen.pgtt === SECOND_STAGE);
    if (paged) this.reference(unit, seen, address);
    unit.recording = false;
    const permission = this.permission, output = this.output;
    const stored = walkPasidEntry(cpu, rootTable, sid, scalable.requestPasid, scalable.walkCfg, this.cpuWalk);
    let differs = !samePasidEntry(seen, stored);
    if (!differs && paged) {
      this.reference(cpu, stored, address);
      differs = permission !== this.permission || (permission !== 0 && output !== this.output);
    }
    if (!differs) return;
    const reads = unit.reads;
    for (let i = 0; i < reads.length; i++) {
      const at = reads[i]!;
      if (unit.read32(at) === cpu.read32(at)) continue;
      // The entry (qword) holding the first dword that differs, and the copy that hides the store.
      const entryAt = at - (at % 8);
      const qword = (m: MemoryAccess) => (BigInt(Math.max(0, m.read32(entryAt + 4))) << 32n) | BigInt(Math.max(0, m.read32(entryAt)));
      const unitValue = qword(unit), cpuValue = qword(cpu);
      const table: RawEntryView["table"] = i < ROOT_READS ? "root" : i < CONTEXT_READS ? "context" : i < DIRECTORY_READS ? "pasid-directory" : i < entryReads ? "pasid-table" : "paging";
      const top = seen.pgtt === FIRST_STAGE ? 4 : seen.aw + 2;
      const level = table === "paging" ? top - ((i - entryReads) >> 1) : undefined;
      const entry = (value: bigint): RawEntryView => ({ structure: "table-entry", table, address: BigInt(entryAt), ...(level ? { level } : {}), value });
      const what = table === "paging" ? `level-${level} paging` : table;
      const unflushed = this.views.cpuCaches?.copied(at) !== undefined;
      const line = at - (at % LINE);
      const kind: DriverBugKind = unflushed ? "unflushed-table-write" : "missing-write-buffer-flush";
      const missing: MissingAction = unflushed ? {
        action: "cache-line-flush", line: BigInt(line),
        text: `CLFLUSH of the line at ${hex(line)} after the store to the ${what} entry at ${hex(entryAt)} (ECAP.C = 0: the unit does not snoop CPU caches)`,
      } : {
        action: "write-buffer-flush",
        text: `GCMD.WBF (write-buffer flush) after the store to the ${what} entry at ${hex(entryAt)}, before a device uses it (CAP.RWBF = 1)`,
      };
      this.report(kind, sid, address, write, entry(unitValue), entry(cpuValue), missing, `${entryAt}|${unitValue}|${cpuValue}`);
      return;
    }
  }

  /** What the tables (read through `memory`) map at the request's page through the PASID entry `w` (permission 0: nothing). */
  private reference(memory: MemoryAccess, w: ScalableWalk, address: number): void {
    this.permission = 0;
    this.output = 0;
    this.level = 1;
    if (w.pgtt === SECOND_STAGE) {
      if (address >= 2 ** Math.min(this.cfg.awBits, awWidth(w.aw))) return;
      const pages = walkPages(memory, w.secondStageRoot, w.aw, address, this.cfg, this.pages);
      this.level = pages.level;
      if (pages.structural !== 0) return;
      this.permission = pages.permission & (MAY_READ | MAY_WRITE);
      this.output = pages.pageOutput + (address % LEVEL_SIZE[pages.level]!) - (address % 4096);
      return;
    }
    // A supervisor read finds any present leaf; its R/W and U/S say what every access may do.
    const fs = this.firstStage;
    if (fs.walk(memory, w.firstStageRoot, this.cfg.awBits, address, false, false, false, w.executeDisable, true) !== 0) return;
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
