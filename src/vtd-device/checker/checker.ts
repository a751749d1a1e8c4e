/**
 * The strict checker (option `checker`): the unit as a checker of guest drivers. Before the unit
 * translates a DMA request, the checker compares what the unit is about to use with what the
 * guest's tables say, and reports the differences a correct driver never lets a device meet:
 *
 * - stale-cache: the context cache, the IOTLB or the endpoint's device-TLB holds a present entry
 *   for the request that the tables no longer give: another output page, other permissions, or
 *   nothing (VT-d §6.5: present entries changed without the invalidation that covers them).
 * - missing-cm-invalidation: with CM = 1 the unit holds a not-present or faulting entry (a
 *   negative entry, DID 0 for contexts) and the tables now give an accessible one: the driver made
 *   an entry present without the invalidation CM requires (VT-d §6.1).
 * - unflushed-table-write: with ECAP.C = 0 and a platform that gives the CPU's view of memory
 *   (`checker.cpuView`), the tables as the unit reads them (memory) and as the CPU sees them (its
 *   caches) translate the request differently: an entry on the request's walk was stored and not
 *   flushed (CLFLUSH) yet. Checked on every request, whether or not the unit then walks; the
 *   entry named is the first on the unit's walk whose bytes differ between the two views.
 *
 * What "differs" means: the outcome for the request's 4 KiB page (output page and read / write
 * permission, nothing when not present or faulting) and, for contexts, the entry's fields; two
 * faulting results are equal. So a 2 MiB leaf replaced by an equivalent 4 KiB table is no bug.
 * Only what the unit really holds is compared: an entry evicted from a cache is not reported
 * (the IOTLB holds 4096 entries by default, the context cache 256).
 *
 * Deduplication: a bug is reported once per (kind, entry, value used, value in the tables);
 * for the IOTLB the entry is (DID, leaf), shared by every device of the domain. Later requests
 * meeting the same pair are counted in `duplicates`; a new value is a new report. After
 * `reportLimit` reports, more are counted in `dropped`. A unit reset forgets what was reported.
 *
 * - missing-write-buffer-flush: with CAP.RWBF = 1 the unit walks the tables through its write
 *   buffer (memory/write-buffer.ts); when that view and memory translate the request
 *   differently, a table store was not followed by GCMD.WBF (or an invalidation) yet. The entry
 *   named is the first on the unit's walk whose bytes differ.
 *
 * Not checked: the invalidation hint (IH) and paging-structure
 * caches (the unit caches leaves only). Interrupt requests are checked against the interrupt
 * entry cache (`inspectInterrupt`). A device that keeps using a buffer
 * after its unmap, inside a lazy driver's flush-queue window, meets a stale IOTLB entry and is
 * reported too: the driver accepted that window, the device should not use it.
 *
 * The checker reads memory only; it changes nothing the unit or the guest sees, and never throws
 * on guest input (a throwing listener or CPU view is ignored). It is installed only when asked
 * for: a unit without it runs the translation code unchanged.
 */
import { TranslationType } from "../../spec/entries.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { contextInputLimit } from "../caches/caching-policy.ts";
import { BufferedRecordingAccess, CpuViewAccess, PageOutcome, RecordingAccess, sameContext } from "./checker-walks.ts";
import type { WriteBufferAccess } from "../memory/write-buffer.ts";
import type { CpuCacheAccess } from "../memory/cpu-caches.ts";
import type { InterruptRemapping } from "../interrupts/interrupt-remapping.ts";
import type { ResolvedCheckerOptions } from "./checker-options.ts";
import { CheckerDiagnostics } from "./checker-diagnostics.ts";
import { CHECKER_RULES, isWarning, type CheckerRule, type CheckerSummaryEntry } from "./checker-rules.ts";
import {
  bigintsAsHex, hex, reportMessage, sourceIdText, translationView, type ContextView, type DriverBugKind, type DriverBugReport, type EntryView, type MissingAction,
  type RawEntryView, type TranslationView,
} from "./checker-report.ts";
import type { ContextCache } from "../caches/context-cache.ts";
import type { DeviceTlbs } from "../caches/device-tlb.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import type { Iotlb } from "../caches/iotlb.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import { ContextWalk, NOT_PRESENT, PageWalk, PERMISSION_READ, PERMISSION_WRITE, walkContext, walkPages } from "../translation/walk.ts";
import type { ScalableTranslation } from "../scalable/scalable-translation.ts";
import { ScalableChecks } from "./scalable-checks.ts";

/** What the checker reads of the unit: its memory, walk configuration and caches (never changed). */
export interface CheckedUnit {
  memory: GuestMemory;
  cfg: WalkConfig;
  cachingMode: boolean;
  coherent: boolean;
  contextCache: ContextCache;
  iotlb: Iotlb;
  deviceTlbs: DeviceTlbs;
  now(): number;
  /** The unit's write buffer (CAP.RWBF), whose table view the unit walks. */
  writeBuffer: WriteBufferAccess | undefined;
  /** The unit's non-snooped view (ECAP.C = 0 with reported cache-line flushes); undefined otherwise. */
  cpuCaches: CpuCacheAccess | undefined;
}

const PASS_THROUGH: number = TranslationType.PassThrough;
const DEVICE_TLB: number = TranslationType.DeviceTlb;

export class DriverChecker {
  /** Every report made (up to reportLimit), oldest first. */
  readonly reports: DriverBugReport[] = [];
  /** Requests that met a bug already reported. */
  duplicates = 0;
  /** Reports past reportLimit (counted, not kept or delivered). */
  dropped = 0;
  /** Requests inspected. */
  inspected = 0;
  /** The warnings (costs, not bugs): fed by the unit's trace events (checker-diagnostics.ts). */
  readonly diagnostics: CheckerDiagnostics;

  private readonly seen = new Set<string>();
  private readonly memory: MemoryAccess;
  private readonly recording: RecordingAccess;
  private readonly cpu: CpuViewAccess | undefined;
  private readonly buffered: BufferedRecordingAccess | undefined;
  private readonly unflushed: BufferedRecordingAccess | undefined;
  private readonly lineSize: number;
  private readonly context = new ContextWalk();
  private readonly cpuContext = new ContextWalk();
  private readonly pages = new PageWalk();
  private readonly cpuPages = new PageWalk();
  private readonly reference = new PageOutcome();
  private readonly used = new PageOutcome();
  /** Scalable mode's checks (scalable-checks.ts), made on the first request in scalable mode. */
  private scalableChecks: ScalableChecks | undefined;
  /** The unit's scalable translation (option scalableMode), whose caches the diagnostics count. */
  scalable: ScalableTranslation | undefined = undefined;

  constructor(private readonly unit: CheckedUnit, private readonly settings: ResolvedCheckerOptions) {
    this.memory = new MemoryAccess(unit.memory);
    this.recording = new RecordingAccess(unit.memory);
    const view = settings.cpuView;
    this.cpu = view && !unit.coherent ? new CpuViewAccess(unit.memory, view) : undefined;
    this.lineSize = view?.lineSize ?? 64;
    this.buffered = unit.writeBuffer ? new BufferedRecordingAccess(unit.memory, unit.writeBuffer) : undefined;
    // Without a CPU view, a unit that models the CPU caches it does not snoop compares its view with memory (the CPU's stores).
    this.unflushed = !this.cpu && unit.cpuCaches ? new BufferedRecordingAccess(unit.memory, unit.cpuCaches) : undefined;
    // Occupancy counts scalable mode's caches too: the PASID cache beside the context cache, the scalable IOTLB beside the IOTLB.
    this.diagnostics = new CheckerDiagnostics({
      iotlbCount: () => unit.iotlb.count + (this.scalable?.caches.iotlb.count ?? 0),
      contextCount: () => unit.contextCache.count + (this.scalable?.caches.pasidCache.count ?? 0),
      now: () => unit.now(),
    });
  }

  /**
   * The reports grouped by rule, errors first: how many, the first one, the spec section and the
   * fix in one sentence (checker-rules.ts). Plain data; `--checker` prints it.
   */
  summary(): CheckerSummaryEntry[] {
    const out: CheckerSummaryEntry[] = [];
    for (const rule of Object.keys(CHECKER_RULES) as CheckerRule[]) {
      const { severity, section, fix } = CHECKER_RULES[rule];
      if (isWarning(rule)) {
        const w = this.diagnostics.warnings.get(rule);
        if (w) out.push({ rule, severity, count: w.count, first: w.first, section, fix, ...(Object.keys(w.totals).length ? { totals: { ...w.totals } } : {}) });
        continue;
      }
      const found = this.reports.filter((r) => r.kind === rule);
      if (found.length > 0) out.push({ rule, severity, count: found.length, first: found[0]!.message, section, fix });
    }
    return out;
  }

  /** A unit reset: what was reported is forgotten (the reports stay readable). */
  reset(): void {
    this.seen.clear();
  }

  /** Called for each request while translation is enabled, before the unit translates it. */
  inspect(sid: number, address: number, write: boolean, rootTable: number): void {
    this.inspected++;
    this.diagnostics.request();
    if (!Number.isSafeInteger(address)) return; // not a whole address below 2^53: beyond every address width
    this.checkCaches(sid, address, write, rootTable);
    if (this.cpu) this.checkFlushes(sid, address, write, rootTable, this.recording, this.cpu, "unflushed-table-write");
    if (this.unflushed) this.checkFlushes(sid, address, write, rootTable, this.unflushed, this.memory, "unflushed-table-write");
    if (this.buffered) this.checkFlushes(sid, address, write, rootTable, this.buffered, this.memory, "missing-write-buffer-flush");
  }

  /**
   * Scalable mode (TTM = 01): called for each request before the unit translates it, with the
   * request's PASID and privilege in `scalable` (the PASID cache and scalable IOTLB, VT-d §6.2).
   */
  inspectScalable(scalable: ScalableTranslation, sid: number, address: number, write: boolean, rootTable: number): void {
    this.inspected++;
    this.diagnostics.request();
    if (!Number.isSafeInteger(address)) return;
    this.scalableChecks ??= new ScalableChecks(this.unit.memory, this.unit.cfg, this.unit.cachingMode,
      (kind, s, a, w, cached, current, missing, key) => this.report(kind, s, a, w, cached, current, missing, key),
      { cpuCaches: this.unit.cpuCaches, writeBuffer: this.unit.writeBuffer });
    this.scalableChecks.inspect(scalable, sid, address, write, rootTable);
  }

  /**
   * Called for each interrupt request before the unit remaps it: a remappable-format request whose
   * IRTE the interrupt entry cache holds with other bits than the table (VT-d §6.2.2; under CM = 1
   * a cached not-present IRTE now present is a missing-cm-invalidation).
   */
  inspectInterrupt(sid: number, address: bigint | number, data: number, ir: InterruptRemapping): void {
    if (!ir.enabled || typeof data !== "number") return;
    const at = typeof address === "bigint" ? (address >= 0n && address <= 0xffff_ffffn ? Number(address) : -1) : address;
    if (!(at >= 0 && at <= 0xffff_ffff) || (at & 0x10) === 0) return; // not a remappable-format request
    let index = ((at >>> 5) & 0x7fff) | (((at >>> 2) & 1) << 15);
    if (at & 0x8) index += data & 0xffff;
    if (index >= ir.tableEntries) return;
    const cache = ir.cache;
    const slot = cache.lookup(index);
    if (slot < 0) return;
    const entry = ir.tableBase + 16 * index;
    const m = this.memory;
    if ((cache.w0[slot]! >>> 0) === (m.read32(entry) >>> 0) && (cache.w1[slot]! >>> 0) === (m.read32(entry + 4) >>> 0) &&
      (cache.w2[slot]! >>> 0) === (m.read32(entry + 8) >>> 0) && (cache.w3[slot]! >>> 0) === (m.read32(entry + 12) >>> 0)) return;
    // A difference: build the report (allocates only here).
    const cached = [cache.w0[slot]! >>> 0, cache.w1[slot]! >>> 0, cache.w2[slot]! >>> 0, cache.w3[slot]! >>> 0];
    const memory = [0, 1, 2, 3].map((i) => m.read32(entry + 4 * i) >>> 0);
    const value = (words: number[]) => words.reduce((v, w, i) => v | (BigInt(w) << BigInt(32 * i)), 0n);
    const view = (words: number[]): RawEntryView => ({ structure: "table-entry", table: "interrupt-remapping", address: BigInt(entry), value: value(words) });
    const kind: DriverBugKind = (cached[0]! & 1) === 0 && (memory[0]! & 1) === 1 && this.unit.cachingMode ? "missing-cm-invalidation" : "stale-cache";
    const missing: MissingAction = {
      action: "interrupt-entry-cache-invalidation", index,
      text: `index-selective interrupt-entry-cache invalidation IIDX ${index} IM 0`,
    };
    this.report(kind, sid, at, true, view(cached), view(memory), missing, `irte|${index}|${value(cached)}|${value(memory)}`);
  }

  // ---- stale-cache and missing-cm-invalidation ----

  private checkCaches(sid: number, address: number, write: boolean, rootTable: number): void {
    const { cfg, contextCache: cc } = this.unit;
    const current = walkContext(this.memory, rootTable, sid, cfg, this.context);
    const slot = cc.lookup(sid);
    if (slot >= 0) {
      const cached = this.cachedContextView(slot);
      const same = cached.present
        ? current.reason === 0 && current.did === cached.did && current.tableRoot === Number(cached.tableRoot) && current.aw === cached.aw &&
          current.translationType === cached.translationType && current.faultProcessingDisable === cached.fpd
        : current.reason !== 0;
      if (!same) {
        const kind: DriverBugKind = cached.present ? "stale-cache" : "missing-cm-invalidation";
        const did = cached.present ? cached.did : 0;
        // What Linux does: a changed entry flushes the old domain; a CM negative entry (DID 0) is followed by the new domain's.
        const then = cached.present || current.reason !== 0 ? did : current.did;
        const missing: MissingAction = {
          action: "context-cache-invalidation", granularity: "device", sid, did,
          text: `device-selective context-cache invalidation SID ${sourceIdText(sid)} DID ${did}, then a domain-selective IOTLB invalidation DID ${then}`,
        };
        const now = contextView(current);
        this.report(kind, sid, address, write, cached, now, missing, `context|${sid}|${JSON.stringify(cached, bigintsAsHex)}|${JSON.stringify(now, bigintsAsHex)}`);
      }
      // A negative entry: the unit faults with it, nothing more is used.
      if (!same || !cached.present) return;
    } else if (current.reason !== 0) {
      return; // the unit walks too and faults the same way
    }
    const tt = current.translationType;
    if (tt === PASS_THROUGH || address >= contextInputLimit(current, cfg.awBits)) return;

    walkPages(this.memory, current.tableRoot, current.aw, address, cfg, this.pages);
    const reference = this.reference.fromWalk(this.pages, address);
    const page = address - (address % 4096);
    if (tt === DEVICE_TLB) {
      const entry = this.unit.deviceTlbs.lookup(sid, address);
      // The endpoint uses its device-TLB when it permits the access; otherwise it asks the unit.
      if (entry && (entry.permission & (write ? PERMISSION_WRITE : PERMISSION_READ)) !== 0) {
        const used = this.used.set(entry.permission, entry.pageOutput);
        if (!used.equals(reference)) {
          const missing: MissingAction = {
            action: "device-tlb-invalidation", sid, address: BigInt(page), size: false,
            text: `device-TLB invalidation SID ${sourceIdText(sid)} addr ${hex(page)} S 0`,
          };
          this.report("stale-cache", sid, address, write, translationView("device-tlb-entry", used.permission, used.output, 1), this.walkView(reference),
            missing, `devtlb|${sid}|${page}|${used.permission}@${used.output}|${reference.permission}@${reference.output}`);
        }
        return;
      }
    }
    const tlb = this.unit.iotlb;
    if (!tlb.lookup(current.did, address)) return; // a miss: the unit walks what the reference walked
    const level = tlb.hitLevel, base = tlb.hitInputBase;
    const used = this.used.set(tlb.hitReason === 0 ? tlb.hitPermission : 0, tlb.hitOutput + (page - base));
    if (used.equals(reference)) return;
    const kind: DriverBugKind = used.permission === 0 && this.unit.cachingMode ? "missing-cm-invalidation" : "stale-cache";
    const am = 9 * (level - 1);
    const missing: MissingAction = {
      action: "iotlb-invalidation", granularity: "page", did: current.did, address: BigInt(base), am,
      text: `page-selective IOTLB invalidation DID ${current.did} addr ${hex(base)} AM ${am}`,
    };
    const cached = translationView("iotlb-entry", used.permission, used.output, level, tlb.hitReason);
    // Keyed by the cached leaf and what the tables map at its start (so one stale 2 MiB leaf is one report).
    const leaf = `${used.permission}@${used.permission === 0 ? 0 : used.output - (page - base)}`;
    const implied = `${reference.permission}@${reference.permission === 0 ? 0 : reference.output - (page - base)}`;
    this.report(kind, sid, address, write, cached, this.walkView(reference), missing, `iotlb|${current.did}|${level}|${base}|${leaf}|${implied}`);
  }

  private cachedContextView(slot: number): ContextView {
    const cc = this.unit.contextCache;
    const reason = cc.reason[slot]!;
    if (reason !== 0) return notPresentContext(reason, cc.did[slot]!, cc.faultProcessingDisable[slot] === 1);
    return {
      structure: "context-entry",
      present: true,
      did: cc.did[slot]!,
      tableRoot: BigInt(cc.tableRoot[slot]!),
      aw: cc.aw[slot]!,
      translationType: cc.translationType[slot]!,
      fpd: cc.faultProcessingDisable[slot] === 1,
    };
  }

  private walkView(outcome: PageOutcome): TranslationView {
    const walk = this.pages;
    return translationView("paging-entries", outcome.permission, outcome.output, walk.level, walk.structural === 0 || walk.structural === NOT_PRESENT ? 0 : walk.structural);
  }

  // ---- unflushed-table-write and missing-write-buffer-flush ----

  /**
   * The unit's view (`rec`: memory, or memory behind the write buffer) against the stores the CPU
   * made (`cpu`: its caches, or memory): the first entry on the unit's walk that differs.
   */
  private checkFlushes(sid: number, address: number, write: boolean, rootTable: number, rec: RecordingAccess | BufferedRecordingAccess,
    cpu: MemoryAccess, kind: "unflushed-table-write" | "missing-write-buffer-flush"): void {
    const { cfg } = this.unit;
    rec.reads.length = 0;
    const unitContext = walkContext(rec, rootTable, sid, cfg, this.context);
    const cpuContext = walkContext(cpu, rootTable, sid, cfg, this.cpuContext);
    let differs = !sameContext(unitContext, cpuContext);
    if (!differs && unitContext.reason === 0 && unitContext.translationType !== PASS_THROUGH && address < contextInputLimit(unitContext, cfg.awBits)) {
      const unitPage = this.reference.fromWalk(walkPages(rec, unitContext.tableRoot, unitContext.aw, address, cfg, this.pages), address);
      const cpuPage = this.used.fromWalk(walkPages(cpu, cpuContext.tableRoot, cpuContext.aw, address, cfg, this.cpuPages), address);
      differs = !unitPage.equals(cpuPage);
    }
    if (!differs) return;
    // The first entry on the unit's walk whose bytes the CPU holds otherwise (walk order: root, context, paging entries).
    const reads = rec.reads;
    const count = reads.length; // the reads below record more: only the walk's are looked at
    for (let i = 0; i < count; ) {
      const table = i < 4 ? "root" : i < 8 ? "context" : "paging";
      const dwords = table === "paging" ? 2 : 4;
      const at = reads[i]!;
      let unitValue = 0n, cpuValue = 0n;
      for (let d = 0; d < dwords && i + d < count; d++) {
        unitValue |= BigInt(Math.max(0, rec.read32(at + 4 * d))) << BigInt(32 * d);
        cpuValue |= BigInt(Math.max(0, cpu.read32(at + 4 * d))) << BigInt(32 * d);
      }
      if (unitValue !== cpuValue) {
        const level = table === "paging" ? unitContext.aw + 2 - ((i - 8) >> 1) : undefined;
        const entry = (value: bigint): RawEntryView => ({ structure: "table-entry", table, address: BigInt(at), ...(level ? { level } : {}), value });
        const line = at - (at % this.lineSize);
        const what = table === "paging" ? `level-${level} paging` : table;
        const missing: MissingAction = kind === "unflushed-table-write" ? {
          action: "cache-line-flush", line: BigInt(line),
          text: `CLFLUSH of the line at ${hex(line)} after the store to the ${what} entry at ${hex(at)} (ECAP.C = 0: the unit does not snoop CPU caches)`,
        } : {
          action: "write-buffer-flush",
          text: `GCMD.WBF (write-buffer flush) after the store to the ${what} entry at ${hex(at)}, before a device uses it (CAP.RWBF = 1)`,
        };
        this.report(kind, sid, address, write, entry(unitValue), entry(cpuValue), missing, `${kind}|${at}|${unitValue}|${cpuValue}`);
        return;
      }
      i += dwords;
    }
  }

  // ---- reports ----

  /** `key` names the entry and both values (see Deduplication above). */
  private report(kind: DriverBugKind, sid: number, address: number, write: boolean, cached: EntryView, current: EntryView, missing: MissingAction, key: string): void {
    key = `${kind}|${key}`;
    if (this.seen.has(key)) {
      this.duplicates++;
      return;
    }
    if (this.reports.length >= this.settings.reportLimit) {
      this.dropped++;
      return;
    }
    this.seen.add(key);
    const fields = { kind, sid, device: sourceIdText(sid), iova: BigInt(address), write, cached, current, missing, time: this.unit.now() };
    const report: DriverBugReport = { ...fields, message: reportMessage(fields) };
    this.reports.push(report);
    try {
      this.settings.onReport?.(report);
    } catch {
      // A user's listener must not break the unit.
    }
  }
}

/** A not-present or invalid context entry: only the fault, the DID it is tagged with (0 under CM) and FPD. */
function notPresentContext(fault: number, did: number, fpd: boolean): ContextView {
  return { structure: "context-entry", present: false, fault, did, tableRoot: 0n, aw: 0, translationType: 0, fpd };
}

function contextView(walk: ContextWalk): ContextView {
  if (walk.reason !== 0) return notPresentContext(walk.reason, 0, walk.faultProcessingDisable);
  return {
    structure: "context-entry",
    present: true,
    did: walk.did,
    tableRoot: BigInt(walk.tableRoot),
    aw: walk.aw,
    translationType: walk.translationType,
    fpd: walk.faultProcessingDisable,
  };
}
