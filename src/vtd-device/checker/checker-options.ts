/**
 * The strict checker's option (`checker` in VtdOptions), checked once like every other option.
 * Off by default; `true` turns it on with no listener (reports are kept on `unit.checker`).
 */
import type { DriverBugReport } from "./checker-report.ts";

/**
 * Guest memory as the guest's CPU sees it, through its caches. Only a platform that models CPU
 * caches (or learns of CLFLUSH) can give it; with it, and ECAP.C = 0, the checker reports table
 * entries the unit reads that the CPU holds with another value (a store not flushed yet).
 */
export interface CpuView {
  /** The little-endian dword at guest-physical `address` as the CPU would read it. */
  read32(address: number): number;
  /** CLFLUSH line size in bytes (for the report). Default 64. */
  readonly lineSize?: number;
}

export interface CheckerOptions {
  /** Receives each driver bug once (see the deduplication rule in checker.ts). A throwing listener is ignored. */
  onReport?: (report: DriverBugReport) => void;
  /** The CPU's view of memory; without it, unflushed table writes are not checked. */
  cpuView?: CpuView;
  /** Reports kept and delivered at most; later ones are only counted. Default 1000. */
  reportLimit?: number;
}

export interface ResolvedCheckerOptions {
  onReport: ((report: DriverBugReport) => void) | undefined;
  cpuView: CpuView | undefined;
  reportLimit: number;
}

const KNOWN = new Set(["onReport", "cpuView", "reportLimit"]);

/** undefined: the checker is off. */
export function resolveCheckerOptions(value: unknown): ResolvedCheckerOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { onReport: undefined, cpuView: undefined, reportLimit: 1000 };
  if (value === null || typeof value !== "object") {
    throw new TypeError(`VtdDevice option checker: expected true, false or { onReport, cpuView, reportLimit }, got ${String(value)}`);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) throw new TypeError(`VtdDevice option checker.${key}: unknown (expected onReport, cpuView or reportLimit)`);
  }
  if (o.onReport !== undefined && typeof o.onReport !== "function") throw new TypeError("VtdDevice option checker.onReport: expected a function");
  const cpuView = o.cpuView as CpuView | undefined;
  if (cpuView !== undefined) {
    if (cpuView === null || typeof cpuView !== "object" || typeof cpuView.read32 !== "function") {
      throw new TypeError("VtdDevice option checker.cpuView: expected an object with read32(address)");
    }
    const line = cpuView.lineSize;
    if (line !== undefined && (typeof line !== "number" || !Number.isInteger(line) || line < 8 || line > 4096 || (line & (line - 1)) !== 0)) {
      throw new RangeError(`VtdDevice option checker.cpuView.lineSize: expected a power of two in 8..4096, got ${String(line)}`);
    }
  }
  const limit = o.reportLimit ?? 1000;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0 || limit > 1_000_000) {
    throw new RangeError(`VtdDevice option checker.reportLimit: expected a whole number in 0..1000000, got ${String(limit)}`);
  }
  return { onReport: o.onReport as ResolvedCheckerOptions["onReport"], cpuView, reportLimit: limit };
}
