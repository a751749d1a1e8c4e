/** The options both main commands share for explaining a run: --checker, --trace, --trace-events, --dump, --compare-caching-mode. */
import { flag, option, text } from "./options.ts";

export const EXPLAIN_OPTIONS = {
  checker: option("--checker", flag, undefined, ["the strict checker's reports grouped by rule (errors, then warnings: count, first example,", "spec section, fix), then each error as a paragraph: what the guest did,", "what the unit had cached, the rule, the invalidation that would have covered it"]),
  trace: option("--trace <file>", text(), undefined, "write the unit's trace events to <file> as JSON lines (bigints as hex strings)"),
  traceEvents: option("--trace-events <pattern>", text(), undefined, ["only these events in --trace: names or globs, comma-separated", '(e.g. "vtd_inv*,vtd_fault")']),
  dump: option("--dump", flag, undefined, ["at exit, print the unit's state as Linux's intel-iommu debugfs would:", "iommu_regset, dmar_translation_struct, invalidation_queue, caches"]),
  compareCachingMode: option("--compare-caching-mode", flag, undefined, ["run the guest with CM=0 and with CM=1 and print what changed", "(invalidations by kind, waits, faults, time)"]),
};
