/**
 * Turns a Linux run into figures (boot-to-init, workload throughput, the unit's invalidations per
 * MiB transferred) and checks (data read back equals data written, no DMAR fault, ...), and
 * prints them after the console for `npm run linux`.
 */
import { createHash } from "node:crypto";
import { formatSummary } from "../cli/summary.ts";
import type { LinuxRun } from "./boot.ts";
import { DMAR_FAULT_PATTERN, iommuGroups, resultValue, virtioBlk, workload, type Workload } from "./guest-report.ts";
import { difference, totalInvalidations, type UnitSnapshot } from "./unit-counts.ts";
import { getField } from "../spec/field.ts";
import { Reg, Rtaddr } from "../spec/registers.ts";
import { PasidGranularTranslationType, TranslationTableMode } from "../spec/scalable.ts";

export const VTD_BANNER = "DMAR: Intel(R) Virtualization Technology for Directed I/O";
export const CM_BATCHING_LINE = "DMAR: IOMMU batching disallowed due to virtualization";

export interface LinuxFigures {
  /** Host wall time from the start of the run to init's first line, ms. */
  bootToInitMs: number | undefined;
  /** The guest's /proc/uptime when init started, s. */
  guestUptimeAtInit: number | undefined;
  workload: Workload | undefined;
  /** Host wall time of the write and of the read, ms (console marks). */
  writeMs: number | undefined;
  readMs: number | undefined;
  /** What the unit counted between the start of the write and the end of the read. */
  workloadUnit: UnitSnapshot | undefined;
  /** MiB that crossed the device's DMA in the workload (written + read). */
  transferredMiB: number;
}

export function linuxFigures(run: LinuxRun): LinuxFigures {
  const { marks } = run;
  const span = (from: keyof typeof marks, to: keyof typeof marks) => {
    const a = marks[from];
    const b = marks[to];
    return a && b ? b.hostMs - a.hostMs : undefined;
  };
  const wl = workload(run.report);
  const start = marks["write-start"];
  const end = marks["read-end"];
  const uptime = resultValue(run.report, "init");
  return {
    bootToInitMs: marks.init?.hostMs,
    guestUptimeAtInit: uptime === undefined ? undefined : Number(uptime),
    workload: wl,
    writeMs: span("write-start", "write-end"),
    readMs: span("read-start", "read-end"),
    workloadUnit: start && end ? difference(end.unit, start.unit) : undefined,
    transferredMiB: wl ? 2 * wl.mib : 0,
  };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The sha256 of the disk's first `mib` MiB as the host holds them after the run. */
export function hostDiskSha256(run: LinuxRun, mib: number): string | undefined {
  if (!run.disk) return undefined;
  return sha256Hex(run.disk.bytes.subarray(0, mib * 2 ** 20));
}

export function expectsIommuOn(cmdline: string): boolean {
  return !/\bintel_iommu=(\S*,)?off\b/.test(cmdline);
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** What must hold for `npm run linux` to exit 0. */
export function linuxChecks(run: LinuxRun): Check[] {
  const report = run.report;
  const wl = workload(report);
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  add("guest completed", run.outcome === "completed", `outcome ${run.outcome}`);
  if (expectsIommuOn(run.cmdline)) {
    add("intel-iommu initialised", run.console.includes(VTD_BANNER), `"${VTD_BANNER}" ${run.console.includes(VTD_BANNER) ? "printed" : "missing"}`);
    const blk = virtioBlk(report);
    const group = blk && iommuGroups(report).find((g) => g.id === blk.group);
    add("virtio-blk in an IOMMU group", !!group?.devices.includes(blk!.pci), blk ? `${blk.pci} in group ${blk.group}` : "no virtio-blk device found");
  }
  if (!wl) {
    add("workload ran", false, "no workload results (no /dev/vda?)");
  } else {
    add("data read back equals data written", wl.patternSha256 === wl.readbackSha256 && wl.writeStatus === 0 && wl.readStatus === 0, `sha256 written ${wl.patternSha256.slice(0, 16)}…, read ${wl.readbackSha256.slice(0, 16)}…, dd status ${wl.writeStatus}/${wl.readStatus}`);
    const host = hostDiskSha256(run, wl.mib);
    add("the host's disk holds the data", host === wl.patternSha256, `host disk sha256 ${host?.slice(0, 16) ?? "none"}…`);
  }
  const faultLines = run.console.split("\n").filter((line) => DMAR_FAULT_PATTERN.test(line)).length;
  add("no DMAR fault", faultLines === 0 && run.unit.faultsRecorded === 0, `Linux printed ${faultLines} fault lines; the unit recorded ${run.unit.faultsRecorded}`);
  return checks;
}

/** The stage names of PGTT values (VT-d §9.6) as the summary prints them. */
const STAGE_NAMES: Partial<Record<number, string>> = {
  [PasidGranularTranslationType.FirstStage]: "first stage",
  [PasidGranularTranslationType.SecondStage]: "second stage",
  [PasidGranularTranslationType.Nested]: "nested",
  [PasidGranularTranslationType.PassThrough]: "pass-through",
};

/** The stage that served most requests in `byPgtt` (UnitSnapshot.translationsByPgtt), or undefined when none was. */
export function chosenStage(byPgtt: readonly number[]): string | undefined {
  let best = -1;
  byPgtt.forEach((n, pgtt) => {
    if (n > 0 && (best < 0 || n > byPgtt[best]!)) best = pgtt;
  });
  return best < 0 ? undefined : (STAGE_NAMES[best] ?? `PGTT ${best}`);
}

/** Which translation Linux set up, as the unit saw it: in scalable mode the PGTT of the PASID-table entries its requests used. */
export function stageLine(run: LinuxRun): string {
  const device = run.platform.device;
  const legacy = "translation: legacy mode (context entries: second stage, or pass-through)";
  if (!device.options.scalableMode) return legacy;
  // What Linux latched: a legacy root table on a unit offering scalable mode means it did not ask for sm_on.
  if (Number(getField(device.readRegister(Reg.RTADDR, 8), Rtaddr.TTM)) !== TranslationTableMode.Scalable) {
    return `${legacy}; the unit offers scalable mode, Linux set a legacy root table (intel_iommu=...,sm_on asks for scalable mode)`;
  }
  const workload = linuxFigures(run).workloadUnit;
  const counts = (workload ?? run.unit).translationsByPgtt;
  const listed = counts.map((n, pgtt) => (n > 0 ? `${STAGE_NAMES[pgtt] ?? `PGTT ${pgtt}`} ${n}` : "")).filter(Boolean);
  const stage = chosenStage(counts);
  return `translation: scalable mode; ${stage ? `Linux chose: ${stage}` : "no request reached a PASID-table entry"}` +
    ` (requests by the PGTT of their PASID-table entry${workload ? " during the workload" : ""}: ${listed.join(", ") || "none"})`;
}

function perMiB(count: number, mib: number): string {
  return mib > 0 ? (count / mib).toFixed(2) : "n/a";
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? "n/a" : `${(ms / 1000).toFixed(2)} s`;
}

export function formatLinuxSummary(run: LinuxRun, checks: Check[]): string {
  const f = linuxFigures(run);
  const report = run.report;
  const lines = ["", "== Linux guest =="];
  lines.push(`cmdline: ${run.cmdline}`);
  lines.push(`kernel: ${resultValue(report, "kernel") ?? "?"}; outcome: ${run.outcome} after ${seconds(run.elapsedMs)} (${run.instructions} instructions, ${run.clflushes} CLFLUSH)`);
  lines.push(`boot to init: ${seconds(f.bootToInitMs)} host wall time (guest uptime ${f.guestUptimeAtInit?.toFixed(2) ?? "n/a"} s)`);
  const driverLines = run.console
    .replace(/\r/g, "")
    .split("\n")
    .filter((line) => !line.startsWith("DMESG ") && /DMAR: (Intel\(R\)|IOMMU batching|Host address width|DRHD base|Enable scalable mode)|iommu: (Default domain type|DMA domain TLB)/.test(line))
    .map((line) => `  ${line.replace(/^\[\s*[\d.]+\]\s*/, "")}`);
  lines.push("driver:", ...(driverLines.length ? driverLines : ["  (no intel-iommu lines)"]));
  const groups = iommuGroups(report);
  lines.push(stageLine(run));
  lines.push(`IOMMU groups: ${groups.length}${groups.map((g) => `; ${g.id} (${g.type}): ${g.devices.join(" ")}`).join("")}`);
  const blk = virtioBlk(report);
  lines.push(`virtio-blk: ${blk ? `${blk.pci} (requester id 0x${(run.disk?.sourceId ?? 0).toString(16).padStart(4, "0")}), group ${blk.group}` : "not found"}`);
  if (f.workload) {
    const wl = f.workload;
    const rate = (ms: number | undefined) => (ms ? `${((wl.mib * 1000) / ms).toFixed(2)} MiB/s` : "n/a");
    lines.push(`workload: ${wl.mib} MiB written in ${seconds(f.writeMs)} (${rate(f.writeMs)}), read back in ${seconds(f.readMs)} (${rate(f.readMs)}), host wall time`);
  }
  lines.push("checks:");
  for (const check of checks) lines.push(`  ${check.ok ? "ok  " : "FAIL"} ${check.name}: ${check.detail}`);

  lines.push("", formatSummary({ device: run.platform.device, exitCode: run.exitCode, timedOut: run.outcome === "timeout", elapsedMs: run.elapsedMs, instructions: run.instructions }));
  const sid = run.disk?.sourceId;
  if (sid !== undefined) {
    lines.push(`virtio-blk DMA (requester id 0x${sid.toString(16).padStart(4, "0")}): ${run.unit.iotlbMissesBySid.get(sid) ?? 0} IOTLB misses, ${run.unit.contextMissesBySid.get(sid) ?? 0} context misses; all requesters: ${run.unit.translations} translations, ${run.unit.iotlbHits} IOTLB hits`);
  }
  if (f.workloadUnit) {
    const w = f.workloadUnit;
    lines.push(`during the workload (${f.transferredMiB} MiB transferred): ${w.translations} translations, ${w.iotlbMisses} IOTLB misses, ${w.invalidationWaits} waits, invalidations per MiB:`);
    const kinds = [...w.invalidations].sort(([a], [b]) => a.localeCompare(b));
    if (kinds.length === 0) lines.push("  none");
    for (const [kind, n] of kinds) lines.push(`  ${kind}: ${perMiB(n, f.transferredMiB)} (${n})`);
    lines.push(`  total: ${perMiB(totalInvalidations(w), f.transferredMiB)}`);
  }
  return lines.join("\n");
}

