/** The command line of `npm start` (src/main.ts): parsed strictly, every mistake named. */
import { ArgumentError, flag, formatUsage, onOff, oneOf, option, parseOptions, seconds, text, type ParsedOptions } from "./options.ts";
import { DEFAULT_NS_PER_INSTRUCTION } from "../v86/virtual-clock.ts";
import { EXPLAIN_OPTIONS } from "./explain-options.ts";

export const DEFAULT_KERNEL = "build/firmware/vtd-test.elf";
export const DEFAULT_TIMEOUT_SECONDS = 60;

/** `npm start`'s options: a row an option. */
export const START_OPTIONS = {
  cachingMode: option("--caching-mode on|off", onOff, true, "CAP.CM (default on)"),
  awBits: option("--aw-bits 39|48", oneOf({ 39: 39, 48: 48 }), 48, "guest address width (default 48)"),
  scalableMode: option("--scalable-mode on|off", onOff, undefined, ["ECAP.SMTS: scalable mode (TTM = 01, PASID tables, 256-bit queue;", "QEMU intel-iommu x-scalable-mode; default off); the test guest", "runs its scalable-mode section when its command line says scalable"]),
  firstStage: option("--first-stage on|off", onOff, undefined, ["ECAP.FSTS: first-stage translation alone (QEMU intel-iommu x-flts;", "needs --scalable-mode on and --aw-bits 48; default off)"]),
  kernel: option("--kernel <file>", text(), undefined, [`multiboot ELF to boot (default ${DEFAULT_KERNEL},`, "built by npm run build:firmware when missing)"]),
  /** The guest's (multiboot) command line; a guest option may itself start with "--". */
  cmdline: option('--cmdline "<text>"', text({ anyValue: true }), "", ["the guest's command line; the test guest knows", "skip-cm-invalidation, skip-iec-invalidation, skip-cache-flush, no-qi,", "translation-off, dma-rounds=N, scalable"]),
  timeoutSeconds: option("--timeout <seconds>", seconds, DEFAULT_TIMEOUT_SECONDS, `wall-clock limit (default ${DEFAULT_TIMEOUT_SECONDS})`),
  deterministic: option("--deterministic", flag, undefined, [`guest time follows guest instructions (${DEFAULT_NS_PER_INSTRUCTION} ns each):`, "the same transcript every run, whatever the host does"]),
  ...EXPLAIN_OPTIONS,
};

export type MainArguments = ParsedOptions<typeof START_OPTIONS>;

export const USAGE = formatUsage(
  `usage: npm start -- [options]

Boots the VT-d test guest in v86 with the emulated IOMMU, streams its serial output,
then prints a summary of the unit (VER/CAP/ECAP/GSTS/FSTS, invalidations, faults). When the
guest skipped an invalidation caching mode requires (skip-cm-invalidation), it says what
happened and which invalidation would have covered it.
Exits with the guest's exit code (124 on timeout).`,
  START_OPTIONS,
);

export { ArgumentError };

export function parseArguments(argv: readonly string[]): MainArguments {
  return parseOptions(START_OPTIONS, argv);
}

/**
 * The unit's scalable-mode options from --scalable-mode and --first-stage (QEMU intel-iommu
 * x-scalable-mode and x-flts); a combination the unit refuses is an ArgumentError naming the option.
 */
export function scalableOptions(args: Pick<MainArguments, "scalableMode" | "firstStage" | "awBits">): { scalableMode?: boolean; firstStage?: boolean } {
  if (args.firstStage && !args.scalableMode) throw new ArgumentError("option --first-stage on: needs --scalable-mode on (first-stage translation exists only in scalable mode)");
  if (args.firstStage && args.awBits !== 48) throw new ArgumentError("option --first-stage on: needs --aw-bits 48 (4-level first-stage paging)");
  return args.scalableMode ? { scalableMode: true, firstStage: args.firstStage ?? false } : {};
}
