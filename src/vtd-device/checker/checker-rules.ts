/**
 * Every rule the strict checker knows, in one place: what it is (an error, a driver bug, or a
 * warning, a cost), the spec section, and the fix in one sentence. The checker's summary, the
 * CLI's `--checker` output and docs/driver-bugs.md use these words.
 */
import type { DriverBugKind } from "./checker-report.ts";

export type CheckerWarningKind =
  /** Adjacent page-selective IOTLB invalidations of one domain, no DMA between: one range invalidation would have covered them. */
  | "page-by-page-invalidation"
  /** A polled invalidation wait (IF = 0) behind device-TLB invalidations: the CPU spun until the endpoints answered. */
  | "spun-device-tlb-wait"
  /** An invalidation that dropped nothing: the cache held nothing it covers. */
  | "invalidation-without-effect"
  /** A global invalidation other than the one after SRTP: every domain's entries go, where a domain- or page-selective one would do. */
  | "global-invalidation";

export type CheckerRule = DriverBugKind | CheckerWarningKind;

export interface RuleText {
  severity: "error" | "warning";
  section: string;
  /** The fix, one sentence. */
  fix: string;
}

export const CHECKER_RULES: Record<CheckerRule, RuleText> = {
  "stale-cache": {
    severity: "error", section: "VT-d §6.5",
    fix: "After changing or removing a present entry, invalidate the caches that may hold it (context cache, PASID cache, IOTLB, device-TLB) before the device or the IOVA is used again.",
  },
  "missing-cm-invalidation": {
    severity: "error", section: "VT-d §6.1",
    fix: "With CAP.CM = 1, invalidate after making an entry present too (device-selective context invalidation with DID 0 for a context entry, PASID-selective PASID-cache invalidation for a PASID-table entry, page-selective IOTLB invalidation for a second-stage mapping; first-stage mappings need none).",
  },
  "unflushed-table-write": {
    severity: "error", section: "VT-d §11.4.3 (ECAP.C)",
    fix: "With ECAP.C = 0, flush (CLFLUSH) every table entry you store before the unit may read it.",
  },
  "missing-write-buffer-flush": {
    severity: "error", section: "VT-d §6.8",
    fix: "With CAP.RWBF = 1, write GCMD.WBF and wait for GSTS.WBFS to clear after a table change that no invalidation follows.",
  },
  "page-by-page-invalidation": {
    severity: "warning", section: "VT-d §6.5.2.3 (AM)",
    fix: "Invalidate a contiguous range with one page-selective invalidation (address mask AM), or the domain when the range is large.",
  },
  "spun-device-tlb-wait": {
    severity: "warning", section: "VT-d §6.5.2.8, §6.5.2.5",
    fix: "Wait for device-TLB invalidations with an interrupt (wait descriptor IF = 1) and sleep: an endpoint may take up to a minute to answer.",
  },
  "invalidation-without-effect": {
    severity: "warning", section: "VT-d §6.5",
    fix: "Skip invalidations of what the unit cannot have cached (CM = 0 and an entry that was not present); under CM = 1 they are required, so this counts the cost.",
  },
  "global-invalidation": {
    severity: "warning", section: "VT-d §6.5.2.2, §6.5.2.3",
    fix: "Invalidate only the domain (or the pages) you changed; a global invalidation empties every domain's cached translations.",
  },
};

export function isWarning(rule: CheckerRule): rule is CheckerWarningKind {
  return CHECKER_RULES[rule].severity === "warning";
}

/** One group of the checker's summary. */
export interface CheckerSummaryEntry {
  rule: CheckerRule;
  severity: "error" | "warning";
  /** Reports (errors: distinct bugs; warnings: occurrences). */
  count: number;
  /** The first occurrence, as one line. */
  first: string;
  section: string;
  fix: string;
  /** Rule-specific totals: for spun-device-tlb-wait the unit time spun (ms); for page-by-page-invalidation the runs. */
  totals?: Record<string, number>;
}
