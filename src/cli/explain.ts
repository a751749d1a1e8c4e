/**
 * What the main commands explain in words: the strict checker's reports as paragraphs
 * (`--checker`), what happened after the guest skipped a caching-mode invalidation, and the
 * CM=0 / CM=1 comparison table (`--compare-caching-mode`).
 */
import { FaultReason } from "../spec/index.ts";
import { describeEntry, hex } from "../vtd-device/checker/checker-report.ts";
import type { DriverBugReport, TraceEvent, VtdDevice } from "../vtd-device/index.ts";
import { CHECKER_RULES, type CheckerSummaryEntry } from "../vtd-device/checker/checker-rules.ts";

/** The invalidations of DMA-remapping caches: legacy descriptors and registers, and scalable mode's PASID descriptors. */
type CacheInvalidationEvent = Extract<TraceEvent, { type: "vtd_inv" | "vtd_inv_pasid" }>;

/** Checker reports and the events around them, in order (one sequence for both). */
export class ExplainRecorder {
  readonly reports: { seq: number; report: DriverBugReport }[] = [];
  readonly faults: { seq: number; time: number; sid: number; reason: FaultReason; address: bigint }[] = [];
  readonly invalidations: { seq: number; time: number; event: CacheInvalidationEvent }[] = [];
  readonly iecInvalidations: { seq: number; time: number; event: Extract<TraceEvent, { type: "vtd_inv_iec" }> }[] = [];
  private seq = 0;
  private device: VtdDevice | undefined;

  /** The vtd option `checker` for a unit whose reports this recorder keeps. */
  readonly checkerOption = { onReport: (report: DriverBugReport) => void this.reports.push({ seq: this.seq++, report }) };

  attach(device: VtdDevice): void {
    this.device = device;
    device.trace.subscribe((event) => {
      if (event.type === "vtd_fault") this.faults.push({ seq: this.seq++, time: device.now, sid: event.sid, reason: event.reason, address: event.address });
      else if (event.type === "vtd_inv" || event.type === "vtd_inv_pasid") this.invalidations.push({ seq: this.seq++, time: device.now, event });
      else if (event.type === "vtd_inv_iec") this.iecInvalidations.push({ seq: this.seq++, time: device.now, event });
    });
  }

  /** The checker's reports grouped by rule, with counts, the first example, the spec section and the fix. */
  get summary(): CheckerSummaryEntry[] {
    return this.device?.checker?.summary() ?? [];
  }

  /** Requests the checker inspected, repeats of a reported bug and reports past the limit. */
  get counts(): { inspected: number; duplicates: number; dropped: number } {
    const c = this.device?.checker;
    return { inspected: c?.inspected ?? 0, duplicates: c?.duplicates ?? 0, dropped: c?.dropped ?? 0 };
  }
}

const RULES: Record<DriverBugReport["kind"], { rule: string; did: (r: DriverBugReport) => string; cached: string }> = {
  "stale-cache": {
    rule: "a present entry the unit may cache was changed or removed; software must invalidate the caches that may hold it before the device uses it again",
    did: (r) => `changed the entry without invalidating: the tables now hold ${describeEntry(r.current)}`,
    cached: "a present entry, as it was before the change",
  },
  "missing-cm-invalidation": {
    rule: "with CAP.CM = 1 the unit may cache not-present and faulting entries (negative caching); software must invalidate after making any entry present",
    did: (r) => `made the entry present without the invalidation caching mode requires: the tables now hold ${describeEntry(r.current)}`,
    cached: "the not-present entry (a negative entry, kept because CAP.CM = 1)",
  },
  "unflushed-table-write": {
    rule: "with ECAP.C = 0 the unit reads tables from memory, not the CPU's caches; software must flush (CLFLUSH) each table entry it writes before the unit may read it",
    did: (r) => `stored a table entry and did not flush it: the CPU sees ${describeEntry(r.current)}`,
    cached: "what memory still holds",
  },
  "missing-write-buffer-flush": {
    rule: "with CAP.RWBF = 1 table stores may sit in the unit's write buffer; software must flush it (GCMD.WBF) after changing an entry that no invalidation follows",
    did: (r) => `stored a table entry and did not flush the write buffer: memory holds ${describeEntry(r.current)}`,
    cached: "what the unit still sees through its write buffer",
  },
};

/** One report as a short paragraph. */
export function explainReport(r: DriverBugReport, n: number): string {
  const rule = RULES[r.kind];
  return [
    `[${n}] ${r.kind} at ${r.time.toFixed(3)} ms: device ${r.device} (SID ${hex(r.sid)}) ${r.write ? "write" : "read"} at IOVA ${hex(r.iova)}`,
    `    what the guest did: ${rule.did(r)}`,
    `    what the unit had cached: ${describeEntry(r.cached)}: ${rule.cached}`,
    `    rule: ${rule.rule} (${CHECKER_RULES[r.kind].section})`,
    `    what would have covered it: ${r.missing.text}`,
  ].join("\n");
}

/** `--checker`: the summary grouped by rule (errors, then warnings), then every report as a paragraph, with the checker's counts. */
export function formatCheckerReports(recorder: ExplainRecorder): string {
  const { inspected, duplicates, dropped } = recorder.counts;
  const n = recorder.reports.length;
  const lines = [`== strict checker: ${n === 0 ? "no driver bug" : `${n} driver bug${n === 1 ? "" : "s"}`} (${inspected} requests inspected${duplicates ? `, ${duplicates} repeats` : ""}${dropped ? `, ${dropped} past the report limit` : ""}) ==`];
  lines.push(...formatCheckerSummary(recorder.summary));
  recorder.reports.forEach(({ report }, i) => lines.push(explainReport(report, i + 1)));
  return lines.join("\n");
}

/** The grouped summary, one block per rule: `error|warning rule ×count (section)`, the first example, the fix. */
export function formatCheckerSummary(summary: readonly CheckerSummaryEntry[]): string[] {
  const lines: string[] = [];
  for (const e of summary) {
    const totals = e.totals ? ` [${Object.entries(e.totals).map(([k, v]) => `${k} ${v}`).join(", ")}]` : "";
    lines.push(`${e.severity} ${e.rule} ×${e.count}${totals} (${e.section})`, `    first: ${e.first}`, `    fix: ${e.fix}`);
  }
  return lines;
}

function covers(event: CacheInvalidationEvent, report: DriverBugReport): boolean {
  const missing = report.missing;
  if (event.type === "vtd_inv_pasid") {
    if (missing.action === "pasid-cache-invalidation") {
      if (event.cache !== "pasid-cache") return false;
      return event.granularity === "global" || (event.did === missing.did && (event.granularity === "domain" || event.pasid === missing.pasid));
    }
    if (missing.action !== "pasid-iotlb-invalidation" || event.cache !== "pasid-iotlb" || event.did !== missing.did || event.pasid !== missing.pasid) return false;
    return event.granularity !== "page" || inRange(report.iova, event.address, event.am);
  }
  if (report.cached.structure === "context-entry") {
    if (event.cache !== "context") return false;
    if (event.granularity === "global") return true;
    if (event.granularity === "domain") return event.did === (report.cached.present ? report.cached.did : 0);
    if (event.sid === undefined) return false;
    const fm = event.fm ?? 0;
    const ignore = fm === 0 ? 0 : ((1 << fm) - 1) << (3 - fm);
    return (event.sid & ~ignore) === (report.sid & ~ignore);
  }
  // An IOTLB invalidation of the domain also drops its first-stage (PASID-tagged) entries in this
  // unit (more than the spec asks: software must use the PASID-based one, §6.5.2.4).
  if (event.cache !== "iotlb" || (missing.action !== "iotlb-invalidation" && missing.action !== "pasid-iotlb-invalidation")) return false;
  if (event.granularity === "global") return true;
  if (event.did !== missing.did) return false;
  if (event.granularity === "domain") return true;
  return inRange(report.iova, event.address, event.am);
}

/** Whether `iova` lies in the 2^am pages from `address`. */
function inRange(iova: bigint, address: bigint | undefined, am: number | undefined): boolean {
  if (address === undefined) return false;
  return iova >= address && iova < address + (4096n << BigInt(am ?? 0));
}

const GRANULARITY_WORDS: Record<string, string> = {
  global: "global", domain: "domain-selective", device: "device-selective", page: "page-selective", index: "index-selective", pasid: "PASID-selective",
};
const CACHE_WORDS: Record<CacheInvalidationEvent["cache"], string> = {
  context: "context-cache", iotlb: "IOTLB", "device-iotlb": "device-TLB", "pasid-cache": "PASID-cache", "pasid-iotlb": "PASID-based IOTLB",
};
/** Interrupt-remapping fault reasons are 20h-2Fh; DMA-remapping ones lie below. */
const isInterruptFault = (reason: number) => reason >= 0x20 && reason < 0x30;

/** Whether an interrupt-entry-cache invalidation drops IRTE `index` (the 2^IM-aligned block from IIDX). */
function coversIrte(event: Extract<TraceEvent, { type: "vtd_inv_iec" }>, index: number): boolean {
  if (event.granularity === "global") return true;
  const block = 2 ** event.mask;
  const start = event.index - (event.index % block);
  return index >= start && index < start + block;
}

/**
 * What happened after the guest left out a caching-mode invalidation, in plain words, from the
 * checker's missing-cm-invalidation reports; undefined when there is none.
 */
export function explainMissingCmInvalidations(recorder: ExplainRecorder): string | undefined {
  const found = recorder.reports.filter(({ report }) => report.kind === "missing-cm-invalidation");
  if (found.length === 0) return undefined;
  const paragraphs = found.map(({ seq, report: r }) => {
    const context = r.cached.structure === "context-entry";
    const irte = r.missing.action === "interrupt-entry-cache-invalidation" ? r.missing.index : undefined;
    const what = irte !== undefined
      ? `interrupt remapping table entry ${irte} (device ${r.device}'s interrupts)`
      : context ? `the context entry of device ${r.device}`
      : r.current.structure === "pasid-entry" ? `the PASID-table entry of PASID ${r.current.pasid} of device ${r.device}`
      : `IOVA page ${hex(r.iova & ~0xfffn)} of device ${r.device}`;
    const cover = irte !== undefined
      ? recorder.iecInvalidations.find((i) => i.seq > seq && coversIrte(i.event, irte))
      : recorder.invalidations.find((i) => i.seq > seq && covers(i.event, r));
    const faults = recorder.faults.filter((f) =>
      f.seq > seq && f.sid === r.sid && isInterruptFault(f.reason) === (irte !== undefined) && (!cover || f.seq < cover.seq));
    const reasons = [...new Set(faults.map((f) => `${FaultReason[f.reason] ?? "fault"} 0x${f.reason.toString(16)}`))].join(", ");
    const cache = cover === undefined ? "" : "cache" in cover.event ? CACHE_WORDS[cover.event.cache] : "interrupt-entry-cache";
    const until = cover
      ? `until the guest's ${GRANULARITY_WORDS[cover.event.granularity] ?? cover.event.granularity} ${cache} invalidation at ${cover.time.toFixed(3)} ms dropped it`
      : "until the end of the run (no invalidation covering it came)";
    const faulted = faults.length > 0 ? `kept faulting (${faults.length} fault${faults.length === 1 ? "" : "s"}: ${reasons}) ${until}` : `used it ${until}`;
    return `the guest made ${what} present (${describeEntry(r.current)}) without invalidating under CM=1; the unit had cached the not-present entry ` +
      `(negative caching) and ${faulted}; ${/^[aeiou]/i.test(r.missing.text) ? "an" : "a"} ${r.missing.text} would have covered it (VT-d §6.1).`;
  });
  return ["== what happened: a caching-mode invalidation was left out ==", ...paragraphs].join("\n");
}

/**
 * What happened after the guest stored a table entry and left out the cache-line flush (ECAP.C =
 * 0), in plain words, from the checker's unflushed-table-write reports; undefined when there is none.
 */
export function explainUnflushedTableWrites(recorder: ExplainRecorder): string | undefined {
  const found = recorder.reports.filter(({ report }) => report.kind === "unflushed-table-write");
  if (found.length === 0) return undefined;
  const paragraphs = found.map(({ seq, report: r }) => {
    const faults = recorder.faults.filter((f) => f.seq > seq && f.sid === r.sid && !isInterruptFault(f.reason));
    const used = r.cached.structure === "table-entry" && r.cached.table === "paging" && (r.cached.value & 3n) !== 0n
      ? `device ${r.device}'s ${r.write ? "write" : "read"} at IOVA ${hex(r.iova)} still went through the old mapping`
      : `device ${r.device}'s ${r.write ? "write" : "read"} at IOVA ${hex(r.iova)} met the old entry${faults.length ? ` and faulted (${FaultReason[faults[0]!.reason] ?? "fault"} 0x${faults[0]!.reason.toString(16)})` : ""}`;
    return `the guest stored ${describeEntry(r.current)} and did not flush the cache line holding it; with ECAP.C = 0 the unit does not snoop the CPU's caches ` +
      `and kept reading what memory held, ${describeEntry(r.cached)} (an invalidation empties the unit's caches, not the CPU's): ${used}; ` +
      `${/^[aeiou]/i.test(r.missing.text) ? "an" : "a"} ${r.missing.text} would have covered it (${CHECKER_RULES[r.kind].section}).`;
  });
  return ["== what happened: a cache-line flush was left out ==", ...paragraphs].join("\n");
}

/** What one run counted, for the CM=0 / CM=1 table. */
export interface RunFigures {
  cachingMode: boolean;
  invalidations: Map<string, number>;
  waits: number;
  descriptors: number;
  faults: number;
  iotlbMisses: number;
  hostMs: number;
  guestMs?: number | undefined;
  instructions?: number | undefined;
  outcome: string;
}

export function runFigures(device: VtdDevice, cachingMode: boolean, run: { hostMs: number; guestMs?: number | undefined; instructions?: number | undefined; outcome: string }): RunFigures {
  const s = device.stats;
  const invalidations = new Map<string, number>([
    ["context-cache global", s.contextInvalidations.global],
    ["context-cache domain", s.contextInvalidations.domain],
    ["context-cache device", s.contextInvalidations.device],
    ["iotlb global", s.iotlbInvalidations.global],
    ["iotlb domain", s.iotlbInvalidations.domain],
    ["iotlb page", s.iotlbInvalidations.page],
    ["device-iotlb", s.deviceIotlbInvalidations],
  ]);
  return {
    cachingMode, invalidations, waits: s.invalidationWaits, descriptors: s.descriptorsProcessed, faults: s.faultsRecorded + s.faultsSuppressed + s.faultsDropped,
    iotlbMisses: s.iotlbMisses, ...run,
  };
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** The side-by-side table and one sentence on why. */
export function formatCachingModeComparison(off: RunFigures, on: RunFigures, deterministic = false): string {
  const rows: [string, number | undefined, number | undefined, number?][] = [];
  for (const [kind, n] of off.invalidations) rows.push([`invalidations: ${kind}`, n, on.invalidations.get(kind)]);
  rows.push(["invalidations: total", total(off.invalidations), total(on.invalidations)]);
  rows.push(["invalidation waits", off.waits, on.waits]);
  rows.push(["queue descriptors", off.descriptors, on.descriptors]);
  rows.push(["faults", off.faults, on.faults]);
  rows.push(["IOTLB misses", off.iotlbMisses, on.iotlbMisses]);
  rows.push(["host time (ms)", Math.round(off.hostMs), Math.round(on.hostMs)]);
  if (off.guestMs !== undefined && on.guestMs !== undefined) rows.push(["guest time (ms)", Number(off.guestMs.toFixed(3)), Number(on.guestMs.toFixed(3)), 3]);
  if (off.instructions !== undefined && on.instructions !== undefined) rows.push(["guest instructions", off.instructions, on.instructions]);
  const lines = ["== caching mode: CM=0 vs CM=1 ==", `${"".padEnd(36)}${"CM=0".padStart(12)}${"CM=1".padStart(12)}${"change".padStart(12)}`];
  for (const [name, a, b, digits] of rows) {
    const change = a === undefined || b === undefined ? "" : b === a ? "=" : `${b > a ? "+" : ""}${(b - a).toFixed(digits ?? 0)}`;
    lines.push(`${name.padEnd(36)}${String(a ?? "").padStart(12)}${String(b ?? "").padStart(12)}${change.padStart(12)}`);
  }
  lines.push(`${"guest outcome".padEnd(36)}${off.outcome.padStart(12)}${on.outcome.padStart(12)}`);
  if (!deterministic) lines.push("(times are host times: the first run also warms up v86's JIT; --deterministic makes guest time follow instructions)");
  lines.push(cachingModeSentence(off, on));
  return lines.join("\n");
}

export function cachingModeSentence(off: RunFigures, on: RunFigures): string {
  const more = total(on.invalidations) - total(off.invalidations);
  const changed = [...on.invalidations]
    .map(([kind, n]) => [kind, n - (off.invalidations.get(kind) ?? 0)] as const)
    .filter(([, d]) => d !== 0)
    .map(([kind, d]) => `${d > 0 ? "+" : ""}${d} ${kind}`)
    .join(", ");
  if (more > 0) {
    return `why: with CM=1 the unit may cache not-present entries (VT-d §6.1), so the guest must also invalidate when it makes an entry present ` +
      `(a new context or a new mapping), not only when it removes or changes one: ${more} more invalidation${more === 1 ? "" : "s"} (${changed}).`;
  }
  if (more < 0) {
    return `why: the guest issued ${-more} fewer invalidation${more === -1 ? "" : "s"} with CM=1 (${changed}); ` +
      "CM=1 only adds invalidations for entries made present (VT-d §6.1), so this difference comes from the guest's own choices (a different path or timing).";
  }
  return "why: the guest issued the same invalidations under both: it made no entry present that CM=1 asks it to invalidate (VT-d §6.1), or it invalidates them whatever CM says.";
}
