/** The command line of `npm run linux` (src/linux/main.ts): parsed strictly, every mistake named. */
import { ArgumentError, flag, formatUsage, integer, onOff, option, parseOptions, seconds, text, type ParsedOptions } from "../cli/options.ts";
import { DEFAULT_DISK_MIB, DEFAULT_WORKLOAD_MIB } from "./boot.ts";
import { EXPLAIN_OPTIONS } from "../cli/explain-options.ts";

export const DEFAULT_LINUX_CMDLINE = "intel_iommu=on";
export const DEFAULT_LINUX_TIMEOUT_SECONDS = 180;

/** `npm run linux`'s options: a row an option. */
export const LINUX_OPTIONS = {
  cachingMode: option("--caching-mode on|off", onOff, false, "the unit's CAP.CM (default off)"),
  scalableMode: option("--scalable-mode on|off", onOff, false, [
    "the unit's scalable mode, ECAP.SMTS (QEMU x-scalable-mode; default off); Linux uses it",
    'with "intel_iommu=on,sm_on" in --cmdline',
  ]),
  firstStage: option("--first-stage on|off", onOff, undefined, [
    "with --scalable-mode on: first-stage translation, ECAP.FSTS (QEMU x-flts; default on)",
  ]),
  secondStage: option("--second-stage on|off", onOff, undefined, [
    "with --scalable-mode on: second-stage translation, ECAP.SSTS (default on; QEMU 10.0's",
    "x-flts=on offers the first stage alone, which is --second-stage off)",
  ]),
  /** Extra kernel command line (after console=ttyS0). */
  cmdline: option('--cmdline "<extra>"', text({ anyValue: true, refuse: { pattern: /[\r\n]/, reason: "a kernel command line has no line breaks" } }), DEFAULT_LINUX_CMDLINE, [
    `kernel command line after console=ttyS0 (default "${DEFAULT_LINUX_CMDLINE}"),`,
    'e.g. "intel_iommu=on,strict", "intel_iommu=on iommu=pt", "intel_iommu=off"',
  ]),
  timeoutSeconds: option("--timeout <seconds>", seconds, DEFAULT_LINUX_TIMEOUT_SECONDS, `wall-clock limit for the boot (default ${DEFAULT_LINUX_TIMEOUT_SECONDS})`),
  workloadMiB: option("--workload-mib <n>", integer(1, DEFAULT_DISK_MIB), DEFAULT_WORKLOAD_MIB, `MiB written to and read back from the disk (1..${DEFAULT_DISK_MIB}, default ${DEFAULT_WORKLOAD_MIB})`),
  rebuild: option("--rebuild", flag, false, "rebuild the kernel and the initramfs even when cached"),
  /** Print only the summary, not the streamed console. */
  quiet: option("--quiet", flag, false, "do not stream the console"),
  deterministic: option("--deterministic", flag, false, "guest time follows guest instructions: the same console every run"),
  ...EXPLAIN_OPTIONS,
};

export type LinuxArguments = ParsedOptions<typeof LINUX_OPTIONS>;

export const LINUX_USAGE = formatUsage(
  `usage: npm run linux -- [options]

Builds the Linux guest when missing (npm run build:linux: Debian's linux-source-6.1 on
tinyconfig, busybox-static initramfs), boots it in v86 with SeaBIOS, our VT-d unit and a
virtio-blk disk whose DMA goes through the unit, streams the console, and prints a summary:
what the guest reported (DMAR lines, IOMMU groups, the write/read-back sha256, faults) and
what the unit counted (invalidations by kind per MiB transferred, faults, boot-to-init time).
Exits 0 when the guest completed its workload with matching data and no DMAR fault, 1 otherwise
(with the last console lines), 124 on a timeout, 2 on a bad option.`,
  LINUX_OPTIONS,
);

export { ArgumentError as LinuxArgumentError };

export function parseLinuxArguments(argv: readonly string[]): LinuxArguments {
  const args = parseOptions(LINUX_OPTIONS, argv);
  if (!args.scalableMode) {
    if (args.firstStage !== undefined) throw new ArgumentError("option --first-stage: needs --scalable-mode on (first-stage translation exists only in scalable mode)");
    if (args.secondStage !== undefined) throw new ArgumentError("option --second-stage: needs --scalable-mode on (legacy mode always translates with the second stage)");
  }
  if (args.firstStage === false && args.secondStage === false) throw new ArgumentError("options --first-stage off and --second-stage off: a scalable-mode unit needs at least one stage");
  return args;
}

/** The unit's scalable-mode options the command line asks for: both stages unless one is turned off. */
export function scalableOptions(args: Pick<LinuxArguments, "scalableMode" | "firstStage" | "secondStage">): { scalableMode?: boolean; firstStage?: boolean; secondStage?: boolean } {
  if (!args.scalableMode) return {};
  return { scalableMode: true, firstStage: args.firstStage ?? true, secondStage: args.secondStage ?? true };
}
