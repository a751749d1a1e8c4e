/**
 * The checker's warnings: what a driver does that is correct but costs (checker-rules.ts). Read
 * from the unit's trace events and cache occupancy, never from guest memory:
 * - page-by-page-invalidation: page-selective IOTLB invalidations of one domain whose ranges touch
 *   the previous one's, with no DMA request between (one range would have covered them). Each
 *   invalidation after the first of such a run counts once.
 * - spun-device-tlb-wait: a wait descriptor without IF (the CPU polls its status) that completed
 *   after device-TLB invalidations; the unit time from the first of them to the wait's completion
 *   is what the CPU spun.
 * - invalidation-without-effect: a context-cache or IOTLB invalidation after which the cache holds
 *   as many entries as before it (occupancy is sampled after every translation, so nothing else
 *   changes it in between).
 * - global-invalidation: a global context-cache or IOTLB invalidation other than the first of each
 *   after SRTP (which CAP.ESRTPS = 0 requires).
 * Bounded: one record per rule, constant work per event.
 */
import type { TraceEvent } from "../trace.ts";
import { hex } from "./checker-report.ts";
import type { CheckerWarningKind } from "./checker-rules.ts";

export interface WarningRecord {
  count: number;
  first: string;
  totals: Record<string, number>;
}

/** What the diagnostics read of the unit. */
export interface DiagnosedUnit {
  iotlbCount(): number;
  contextCount(): number;
  now(): number;
}

export class CheckerDiagnostics {
  readonly warnings = new Map<CheckerWarningKind, WarningRecord>();
  private iotlbCount = 0;
  private contextCount = 0;
  /** A global invalidation of each cache is expected once after SRTP. */
  private rootChanged = { iotlb: true, context: true };
  /** The current run of page-selective invalidations: domain and [start, end); did -1 = none. */
  private runDid = -1;
  private runStart = 0;
  private runEnd = 0;
  private runLength = 0;
  private runFirst = "";
  /** Unit time of the first device-TLB invalidation not yet followed by a wait; -1 = none. */
  private deviceTlbSince = -1;

  constructor(private readonly unit: DiagnosedUnit) {}

  /** A DMA request reached the unit: a run of page-by-page invalidations ends. */
  request(): void {
    this.runDid = -1;
  }

  /** After every translation: the caches' occupancy, so an invalidation's effect can be measured. */
  sample(): void {
    this.iotlbCount = this.unit.iotlbCount();
    this.contextCount = this.unit.contextCount();
  }

  event(e: TraceEvent): void {
    switch (e.type) {
      case "vtd_gcmd":
        if (e.command.startsWith("SRTP")) this.rootChanged = { iotlb: true, context: true };
        this.sample();
        return;
      case "vtd_inv":
        if (e.cache === "device-iotlb") {
          if (this.deviceTlbSince < 0) this.deviceTlbSince = this.unit.now();
          return;
        }
        return this.invalidation(e);
      case "vtd_inv_wait":
        if (this.deviceTlbSince >= 0) {
          const spun = this.unit.now() - this.deviceTlbSince;
          this.deviceTlbSince = -1;
          if (!e.interrupt && spun > 0) {
            const record = this.warn("spun-device-tlb-wait") ?? this.first("spun-device-tlb-wait", `a polled wait (IF = 0) completed ${spun} ms after the device-TLB invalidation before it`);
            record.totals.ms = (record.totals.ms ?? 0) + spun;
          }
        }
        return;
      default:
        return;
    }
  }

  private invalidation(e: Extract<TraceEvent, { type: "vtd_inv" }>): void {
    const iotlb = e.cache === "iotlb";
    const before = iotlb ? this.iotlbCount : this.contextCount;
    this.sample();
    const after = iotlb ? this.iotlbCount : this.contextCount;
    if (after >= before) this.warn("invalidation-without-effect") ?? this.first("invalidation-without-effect", `${describe(e)} (${e.source}) dropped nothing`);
    if (e.granularity === "global") {
      const key = iotlb ? "iotlb" : "context";
      if (this.rootChanged[key]) this.rootChanged[key] = false;
      else this.warn("global-invalidation") ?? this.first("global-invalidation", `${describe(e)} (${e.source}), not the first after SRTP`);
    }
    if (!iotlb) return;
    if (e.granularity !== "page" || e.address === undefined || e.did === undefined) {
      this.runDid = -1;
      return;
    }
    const start = Number(e.address), end = start + 4096 * 2 ** (e.am ?? 0);
    if (this.runDid === e.did && (start === this.runEnd || end === this.runStart)) {
      this.runStart = Math.min(start, this.runStart);
      this.runEnd = Math.max(end, this.runEnd);
      this.runLength++;
      const record = this.warn("page-by-page-invalidation") ?? this.first("page-by-page-invalidation",
        `DID ${e.did}: page-selective invalidations of adjacent ranges from ${this.runFirst}, with no DMA between (one range invalidation would do)`);
      if (this.runLength === 2) record.totals.runs = (record.totals.runs ?? 0) + 1;
      return;
    }
    this.runDid = e.did;
    this.runStart = start;
    this.runEnd = end;
    this.runLength = 1;
    this.runFirst = hex(start);
  }

  /** Counts one more occurrence of a rule seen before; undefined for its first (see `first`), so no text is built for the others. */
  private warn(kind: CheckerWarningKind): WarningRecord | undefined {
    const record = this.warnings.get(kind);
    if (record) record.count++;
    return record;
  }

  private first(kind: CheckerWarningKind, text: string): WarningRecord {
    const record = { count: 1, first: `${text} at ${this.unit.now()} ms`, totals: {} as Record<string, number> };
    this.warnings.set(kind, record);
    return record;
  }
}

function describe(e: Extract<TraceEvent, { type: "vtd_inv" }>): string {
  return `${e.granularity} ${e.cache === "iotlb" ? "IOTLB" : "context-cache"} invalidation${e.did !== undefined && e.granularity !== "global" ? ` DID ${e.did}` : ""}` +
    `${e.address !== undefined ? ` addr ${hex(e.address)} AM ${e.am ?? 0}` : ""}${e.sid !== undefined ? ` SID ${hex(e.sid)}` : ""}`;
}
