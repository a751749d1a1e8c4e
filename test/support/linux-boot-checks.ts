/**
 * What the Linux boot tests share (test/linux-matrix.test.ts in legacy mode,
 * test/linux-scalable.test.ts in scalable mode): loading the built guest, one boot under the
 * strict checker with its log line, and the checks every boot must pass (completion, no driver
 * bug, the DMAR lines, the IOMMU group, the data read back, no fault) and every translated boot.
 */
import { readFileSync } from "node:fs";
import { beforeAll, expect, it } from "vitest";
import { ensureLinuxGuest, linuxGuestReadiness } from "../../firmware/linux/build.ts";
import { bootLinux, lastConsoleLines, type LinuxRun } from "../../src/linux/boot.ts";
import { DMAR_FAULT_PATTERN, iommuGroups, patternBytes, resultValue, virtioBlk, workload } from "../../src/linux/guest-report.ts";
import { hostDiskSha256, linuxFigures, sha256Hex, VTD_BANNER } from "../../src/linux/summary.ts";
import type { UnitSnapshot } from "../../src/linux/unit-counts.ts";
import { getField } from "../../src/spec/field.ts";
import { Cap, Reg } from "../../src/spec/registers.ts";

export const required = process.env.REQUIRE_LINUX === "1";
export const readiness = linuxGuestReadiness();
export const skip = !readiness.ready && !required;
export const WORKLOAD_MIB = 2;
/** 4 KiB pages the workload moves: WORKLOAD_MIB written, then read back. */
export const WORKLOAD_PAGES = (2 * WORKLOAD_MIB << 20) / 4096;
export const BOOT_TIMEOUT_MS = 240_000;

let guest: { bzImage: Uint8Array; initrd: Uint8Array } | undefined;
export async function loadGuest() {
  if (!guest) {
    const files = await ensureLinuxGuest({ log: () => {} });
    guest = { bzImage: new Uint8Array(readFileSync(files.bzImage)), initrd: new Uint8Array(readFileSync(files.initrd)) };
  }
  return guest;
}

/**
 * A file's boots by name, each set by its describe's beforeAll, and `runOf(name)`, the getter the
 * checks take (it fails clearly when that boot did not run); the guest is loaded (and, with
 * REQUIRE_LINUX=1, built) first.
 */
export function bootRuns() {
  const runs: Record<string, LinuxRun> = {};
  const runOf = (name: string) => () => {
    const run = runs[name];
    if (!run) throw new Error(`the ${name} boot did not run`);
    return run;
  };
  beforeAll(async () => {
    await loadGuest();
  }, 30 * 60_000); // a missing kernel is built here when REQUIRE_LINUX=1 (about 6 minutes on 2 cores)
  return { runs, runOf };
}

/** Why the boots are skipped (the kernel is not built and REQUIRE_LINUX is not set), for the describe's title. */
export const skipReason = skip ? ` (skipped: ${(readiness as { reason: string }).reason}; REQUIRE_LINUX=1 builds it)` : "";

/**
 * Boots Linux with `cmdline` and the workload; `extra.vtd` adds unit options (e.g. scalable mode)
 * to the ones every boot has.
 */
export async function boot(cmdline: string, cachingMode: boolean, extra: Partial<Parameters<typeof bootLinux>[0]> = {}): Promise<LinuxRun> {
  const files = await loadGuest();
  const { vtd, ...rest } = extra;
  const stages = vtd?.firstStage === false ? " (second stage only)" : vtd?.secondStage === false ? " (first stage only)" : "";
  const label = `${cmdline}${cachingMode ? ", CM" : ""}${vtd?.scalableMode ? `, scalable mode${stages}` : ""}`;
  // Every boot runs under the strict checker, on a unit that keeps what the spec lets it keep:
  // CAP.ESRTPS = 0 (SRTP leaves the caches) and CAP.RWBF = 1 with its write buffer.
  const started = performance.now();
  const run = await bootLinux({ ...files, cmdline, vtd: { cachingMode, checker: true, rwbf: true, ...vtd }, workloadMiB: WORKLOAD_MIB, timeoutMs: BOOT_TIMEOUT_MS, ...rest });
  const hostMs = performance.now() - started;
  const f = linuxFigures(run);
  const summary = run.platform.device.checker?.summary() ?? [];
  console.log(`[linux ${label}] checker (host ${(hostMs / 1000).toFixed(1)} s, ${run.platform.device.checker?.inspected ?? 0} requests inspected): ` +
    (summary.map((e) => `${e.severity} ${e.rule} ×${e.count} (${(e.count / Math.max(1, f.transferredMiB)).toFixed(1)}/MiB)${e.totals ? ` ${JSON.stringify(e.totals)}` : ""}`).join("; ") || "nothing"));
  const inv = f.workloadUnit ? [...f.workloadUnit.invalidations].map(([k, n]) => `${k} ${(n / f.transferredMiB).toFixed(1)}/MiB`).join(", ") : "n/a";
  console.log(
    `[linux ${label}] ${run.outcome}: init after ${((f.bootToInitMs ?? NaN) / 1000).toFixed(2)} s, ` +
      `run ${(run.elapsedMs / 1000).toFixed(2)} s; workload write ${f.writeMs?.toFixed(0)} ms, read ${f.readMs?.toFixed(0)} ms; invalidations: ${inv}; faults ${run.unit.faultsRecorded}`,
  );
  return run;
}

/** Counts of one invalidation kind ("iotlb page", "iotlb domain", ...) in a snapshot, any interface. */
export function invalidations(unit: UnitSnapshot | undefined, kind: string): number {
  let n = 0;
  for (const [key, value] of unit?.invalidations ?? []) if (key.startsWith(`${kind} (`)) n += value;
  return n;
}

export function consoleLines(run: LinuxRun): string[] {
  return run.console.replace(/\r/g, "").split("\n");
}

/** What every boot must show, whatever the mode. */
export function commonChecks(getRun: () => LinuxRun, groupType: string) {
  it("boots to init and completes the workload", () => {
    const run = getRun();
    expect(run.outcome, `last console lines:\n${lastConsoleLines(run.console)}`).toBe("completed");
    expect(run.exitCode).toBe(0);
  });

  it("gives the strict checker no driver bug on a unit with ESRTPS = 0 and the RWBF write buffer", () => {
    const run = getRun();
    const cap = run.platform.device.readRegister(Reg.CAP, 8);
    expect(getField(cap, Cap.ESRTPS)).toBe(0n);
    expect(getField(cap, Cap.RWBF)).toBe(1n);
    const errors = (run.platform.device.checker?.summary() ?? []).filter((e) => e.severity === "error");
    expect(errors, errors.map((e) => `${e.rule} ×${e.count}: ${e.first}`).join("\n")).toEqual([]);
    expect(run.platform.device.checker!.inspected).toBeGreaterThan(0);
  });

  it("prints Linux's DMAR lines for our unit", () => {
    const run = getRun();
    expect(run.console).toContain("DMAR: Host address width 48");
    expect(run.console).toContain("DMAR: DRHD base: 0x000000fed90000 flags: 0x0");
    expect(run.console).toMatch(/DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap [0-9a-f]+ ecap [0-9a-f]+/);
    expect(run.console).toContain("DMAR: dmar0: Using Queued invalidation");
    expect(run.console).toContain(VTD_BANNER);
  });

  it(`puts the virtio-blk device into an IOMMU group of type ${groupType}`, () => {
    const run = getRun();
    const groups = iommuGroups(run.report);
    expect(groups.length).toBeGreaterThanOrEqual(2); // edu and virtio-blk, both in the DRHD's scope
    const blk = virtioBlk(run.report);
    expect(blk, "init found no virtio-blk device").toBeDefined();
    const group = groups.find((g) => g.id === blk!.group);
    expect(group?.devices).toContain(blk!.pci);
    expect(group?.type).toBe(groupType);
    expect(run.console).toContain(`pci ${blk!.pci}: Adding to iommu group ${blk!.group}`);
    // The requester id Linux knows the device by is the one whose DMA our unit saw.
    const [, bus, dev, fn] = /^0000:([0-9a-f]{2}):([0-9a-f]{2})\.(\d)$/.exec(blk!.pci)!;
    expect((parseInt(bus!, 16) << 8) | (parseInt(dev!, 16) << 3) | Number(fn)).toBe(run.disk!.sourceId);
  });

  it("writes the pattern to /dev/vda and reads the same bytes back", () => {
    const run = getRun();
    const wl = workload(run.report);
    expect(wl).toBeDefined();
    expect(wl!.mib).toBe(WORKLOAD_MIB);
    expect(resultValue(run.report, "disk-bytes")).toBe(String(run.disk!.bytes.length));
    expect([wl!.writeStatus, wl!.readStatus]).toEqual([0, 0]);
    const expected = sha256Hex(patternBytes(WORKLOAD_MIB));
    expect(wl!.patternSha256).toBe(expected);
    expect(wl!.readbackSha256).toBe(expected);
    expect(hostDiskSha256(run, WORKLOAD_MIB)).toBe(expected); // the bytes really crossed the device's DMA
    expect(run.disk!.device.stats.bytesWritten).toBeGreaterThanOrEqual(WORKLOAD_MIB << 20);
    expect(run.disk!.device.stats.bytesRead).toBeGreaterThanOrEqual(WORKLOAD_MIB << 20);
  });

  it("has no DMAR fault, in the guest's log or in our unit", () => {
    const run = getRun();
    expect(consoleLines(run).filter((line) => DMAR_FAULT_PATTERN.test(line))).toEqual([]);
    expect(resultValue(run.report, "dmar-faults")).toBe("0");
    expect(run.unit.faultsRecorded).toBe(0);
    expect(run.unit.faultsBySid.size).toBe(0);
    expect(run.platform.device.stats.faultsSuppressed).toBe(0);
  });
}

/** The translated (non pass-through) modes: the virtio device's DMA walks Linux's page tables. */
export function translatedChecks(getRun: () => LinuxRun) {
  it("translates the virtio device's DMA through Linux's page tables", () => {
    const run = getRun();
    const sid = run.disk!.sourceId;
    expect(run.unit.contextMissesBySid.get(sid) ?? 0).toBeGreaterThanOrEqual(1);
    expect(run.unit.iotlbMissesBySid.get(sid) ?? 0).toBeGreaterThan(0);
    const w = linuxFigures(run).workloadUnit!;
    // At least one translation per 4 KiB page transferred; ring and header accesses come on top.
    expect(w.translations).toBeGreaterThanOrEqual(WORKLOAD_PAGES);
    expect(w.iotlbMissesBySid.get(sid) ?? 0).toBeGreaterThan(0);
  });
}

/** iommu=pt: the virtio device's DMA passes through (its context or PASID-table entry): no page walk, no IOTLB flush. */
export function passThroughChecks(getRun: () => LinuxRun, title: string) {
  it(title, () => {
    const run = getRun();
    expect(run.console).toContain("iommu: Default domain type: Passthrough (set via kernel command line)");
    const sid = run.disk!.sourceId;
    expect(run.unit.contextMissesBySid.get(sid) ?? 0).toBeGreaterThanOrEqual(1);
    expect(run.unit.iotlbMissesBySid.get(sid) ?? 0).toBe(0);
    const w = linuxFigures(run).workloadUnit!;
    expect(w.translations).toBeGreaterThanOrEqual(WORKLOAD_PAGES);
    expect(invalidations(w, "pasid-iotlb") + invalidations(w, "iotlb page") + invalidations(w, "iotlb domain")).toBe(0);
  });
}
