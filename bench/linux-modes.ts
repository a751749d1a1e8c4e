/**
 * The Linux guest's IOMMU modes as the benchmarks run them (bench:linux, bench:linux-profile,
 * bench:peer): the kernel command line after console=ttyS0 and the unit's options for each, and
 * the two measuring helpers they share.
 */
import type { VtdOptions } from "../src/vtd-device/index.ts";

export interface LinuxMode {
  /** The mode's name in tables ("intel_iommu=on,strict"). */
  name: string;
  /** A short name ("strict") for progress lines and profiles. */
  short: string;
  cmdline: string;
  /** The unit's options for the mode (QEMU's intel-iommu gets the same, by its property names). */
  vtd: { cachingMode: boolean; scalableMode?: boolean; firstStage?: boolean } & Omit<VtdOptions, "memory" | "onInterrupt">;
  /** A scalable-mode mode: the name of the legacy mode doing the same with Linux's sm_off. */
  legacy?: string;
}

/** The baseline of every ratio: the unit is present, Linux leaves it off (DMA is not translated). */
export const LINUX_BASELINE: LinuxMode = { name: "intel_iommu=off", short: "off", cmdline: "intel_iommu=off", vtd: { cachingMode: false } };

/**
 * Scalable mode as QEMU 10.0 offers it with x-scalable-mode=on,x-flts=on: first-stage translation
 * only (the unit's secondStage defaults to off with firstStage), which Linux 6.1 uses for its DMA
 * domains when told sm_on: `npm run linux -- --scalable-mode on --second-stage off --cmdline
 * "intel_iommu=on,sm_on"` boots the same.
 */
const SCALABLE = { cachingMode: false, scalableMode: true, firstStage: true } as const;
const SCALABLE_MODES: readonly LinuxMode[] = [
  { name: "sm_on, intel_iommu=on (lazy)", short: "sm_on lazy", cmdline: "intel_iommu=on,sm_on", vtd: SCALABLE, legacy: "intel_iommu=on (lazy)" },
  { name: "sm_on, intel_iommu=on,strict", short: "sm_on strict", cmdline: "intel_iommu=on,sm_on,strict", vtd: SCALABLE, legacy: "intel_iommu=on,strict" },
];

export const LINUX_MODES: readonly LinuxMode[] = [
  LINUX_BASELINE,
  { name: "intel_iommu=on (lazy)", short: "lazy", cmdline: "intel_iommu=on", vtd: { cachingMode: false } },
  { name: "intel_iommu=on,strict", short: "strict", cmdline: "intel_iommu=on,strict", vtd: { cachingMode: false } },
  { name: "CM + intel_iommu=on,strict", short: "CM strict", cmdline: "intel_iommu=on,strict", vtd: { cachingMode: true } },
  { name: "intel_iommu=on iommu=pt", short: "pt", cmdline: "intel_iommu=on iommu=pt", vtd: { cachingMode: false } },
  ...SCALABLE_MODES,
];

/** The median (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** This process's CPU time (user + system, all threads), ms. */
export function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
