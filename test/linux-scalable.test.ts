/**
 * Linux 6.1 in scalable mode (issue 17 item 8): `intel_iommu=on,sm_on` on the unit in scalable
 * mode offering the first and the second stage, with the same four boots and checks as
 * test/linux-matrix.test.ts (DMAR lines, IOMMU group type, the data read back, no fault, no driver
 * bug under the strict checker): lazy, strict, caching mode with strict, and iommu=pt; and a
 * fifth, caching mode with strict on a unit offering the second stage alone, where Linux's
 * flushes after each map are the ones CM's negative second-stage entries need. Which
 * stage Linux chose is read from what the unit saw (requests by the PGTT of their PASID-table
 * entry) and printed. Linux 6.1 puts DMA domains on the first stage when both are offered
 * (first_level_by_default), so its caching-mode rules are the first stage's: no flush after a
 * map, and batching stays allowed; the PASID-table entries are under CM (PASID-cache flushes).
 *
 * Skipped when the kernel is not built (npm run build:linux) unless REQUIRE_LINUX=1.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { LinuxArgumentError, parseLinuxArguments, scalableOptions } from "../src/linux/arguments.ts";
import type { LinuxRun } from "../src/linux/boot.ts";
import { chosenStage, CM_BATCHING_LINE, linuxFigures, stageLine } from "../src/linux/summary.ts";
import { getField } from "../src/spec/field.ts";
import { Cap, Ecap, Reg, Rtaddr } from "../src/spec/registers.ts";
import { PasidGranularTranslationType as Pgtt, TranslationTableMode } from "../src/spec/scalable.ts";
import { BOOT_TIMEOUT_MS, boot, bootRuns, commonChecks, invalidations, passThroughChecks, skip, skipReason, translatedChecks, WORKLOAD_PAGES } from "./support/linux-boot-checks.ts";

/** The unit in scalable mode with both stages, as `npm run linux -- --scalable-mode on` makes it. */
const SCALABLE = scalableOptions(parseLinuxArguments(["--scalable-mode", "on"]));
/** The second stage alone (QEMU 10.0's x-scalable-mode=on without x-flts). */
const SECOND_STAGE_ONLY = scalableOptions(parseLinuxArguments(["--scalable-mode", "on", "--first-stage", "off"]));

describe("npm run linux's scalable-mode options", () => {
  it("offer both stages in scalable mode unless one is turned off, and nothing without it", () => {
    expect(SCALABLE).toEqual({ scalableMode: true, firstStage: true, secondStage: true });
    expect(scalableOptions(parseLinuxArguments(["--scalable-mode", "on", "--second-stage", "off"]))).toEqual({ scalableMode: true, firstStage: true, secondStage: false });
    expect(scalableOptions(parseLinuxArguments(["--scalable-mode=on", "--first-stage=off"]))).toEqual({ scalableMode: true, firstStage: false, secondStage: true });
    expect(scalableOptions(parseLinuxArguments([]))).toEqual({});
    expect(scalableOptions(parseLinuxArguments(["--scalable-mode", "off"]))).toEqual({});
  });

  it("refuse a stage without scalable mode, no stage at all, and a bad value, naming the option", () => {
    expect(() => parseLinuxArguments(["--first-stage", "on"])).toThrow(new LinuxArgumentError("option --first-stage: needs --scalable-mode on (first-stage translation exists only in scalable mode)"));
    expect(() => parseLinuxArguments(["--second-stage", "off"])).toThrow(/option --second-stage: needs --scalable-mode on/);
    expect(() => parseLinuxArguments(["--scalable-mode", "on", "--first-stage", "off", "--second-stage", "off"])).toThrow(/at least one stage/);
    expect(() => parseLinuxArguments(["--scalable-mode", "yes"])).toThrow(new LinuxArgumentError('option --scalable-mode: expected on or off, got "yes"'));
  });

  it("name the stage that served most requests", () => {
    const counts = (entries: [number, number][]) => {
      const out = new Array<number>(8).fill(0);
      for (const [pgtt, n] of entries) out[pgtt] = n;
      return out;
    };
    expect(chosenStage(counts([[Pgtt.FirstStage, 10], [Pgtt.SecondStage, 2]]))).toBe("first stage");
    expect(chosenStage(counts([[Pgtt.SecondStage, 3]]))).toBe("second stage");
    expect(chosenStage(counts([[Pgtt.PassThrough, 1]]))).toBe("pass-through");
    expect(chosenStage(counts([]))).toBeUndefined();
  });
});

/** Requests of the workload by the PGTT of their PASID-table entry. */
function workloadByPgtt(run: LinuxRun): number[] {
  return linuxFigures(run).workloadUnit!.translationsByPgtt;
}

/** PASID-based IOTLB invalidations per MiB transferred in the workload. */
function pasidIotlbPerMiB(run: LinuxRun): number {
  const f = linuxFigures(run);
  return invalidations(f.workloadUnit, "pasid-iotlb") / f.transferredMiB;
}

/** What every scalable-mode boot shows beyond the legacy checks: the unit offered its stages, Linux used scalable mode. */
function scalableChecks(getRun: () => LinuxRun, stage: string, firstStageOffered = true) {
  it(`runs in scalable mode on a unit offering ${firstStageOffered ? "both stages" : "the second stage"}, and the unit saw Linux choose ${stage}`, () => {
    const run = getRun();
    const ecap = run.platform.device.readRegister(Reg.ECAP, 8);
    expect([getField(ecap, Ecap.SMTS), getField(ecap, Ecap.FSTS), getField(ecap, Ecap.SSTS)]).toEqual([1n, firstStageOffered ? 1n : 0n, 1n]);
    expect(run.console).toContain("DMAR: Enable scalable mode if hardware supports");
    // The root table Linux latched is a scalable-mode one (RTADDR.TTM = 01).
    expect(Number(getField(run.platform.device.readRegister(Reg.RTADDR, 8), Rtaddr.TTM))).toBe(TranslationTableMode.Scalable);
    const byPgtt = workloadByPgtt(run);
    expect(chosenStage(byPgtt)).toBe(stage);
    // Every request of the workload went through a PASID-table entry of that one type.
    const total = byPgtt.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(WORKLOAD_PAGES);
    expect(byPgtt.filter((n) => n > 0)).toEqual([total]);
    expect(stageLine(run)).toContain(`Linux chose: ${stage} (`);
    console.log(`[linux ${run.cmdline}${getField(run.platform.device.readRegister(Reg.CAP, 8), Cap.CM) ? ", CM" : ""}] ${stageLine(run)}`);
  });
}

describe.skipIf(skip)(`Linux 6.1 in scalable mode (sm_on) on our VT-d unit${skipReason}`, () => {
  const { runs, runOf } = bootRuns();

  /** In a describe: the boot `name`, then the checks every boot, every translated boot and every scalable-mode boot must pass. */
  function bootAndCheck(name: string, cmdline: string, cachingMode: boolean, vtd: typeof SCALABLE, groupType: string, stage: string): void {
    beforeAll(async () => {
      runs[name] = await boot(cmdline, cachingMode, { vtd });
    }, BOOT_TIMEOUT_MS + 30_000);
    commonChecks(runOf(name), groupType);
    if (stage !== "pass-through") translatedChecks(runOf(name));
    scalableChecks(runOf(name), stage, vtd.firstStage);
  }

  describe("intel_iommu=on,sm_on (lazy invalidation)", () => {
    bootAndCheck("lazy", "intel_iommu=on,sm_on", false, SCALABLE, "DMA-FQ", "first stage");

    it("flushes the first stage lazily: PASID-based IOTLB invalidations from the flush queue, no legacy IOTLB ones", () => {
      const run = runOf("lazy")();
      expect(run.console).toContain("iommu: DMA domain TLB invalidation policy: lazy mode");
      const w = linuxFigures(run).workloadUnit;
      expect(invalidations(w, "pasid-iotlb")).toBeGreaterThan(0);
      expect(invalidations(w, "iotlb page") + invalidations(w, "iotlb domain") + invalidations(w, "iotlb global")).toBe(0);
    });
  });

  describe("intel_iommu=on,sm_on,strict", () => {
    bootAndCheck("strict", "intel_iommu=on,sm_on,strict", false, SCALABLE, "DMA", "first stage");

    it("invalidates the PASID's IOTLB entries on every unmap, more often per MiB than lazy mode", () => {
      const run = runOf("strict")();
      expect(run.console).toContain("iommu: DMA domain TLB invalidation policy: strict mode");
      expect(linuxFigures(run).workloadUnit!.invalidationWaits).toBeGreaterThan(0);
      expect(pasidIotlbPerMiB(run)).toBeGreaterThan(pasidIotlbPerMiB(runOf("lazy")()));
    });

    it("issues one PASID-cache invalidation without caching mode: the global one after SRTP (CAP.ESRTPS = 0); a new PASID-table entry needs only a write-buffer flush", () => {
      expect(invalidations(runOf("strict")().unit, "pasid-cache")).toBe(1);
    });
  });

  describe("caching mode, intel_iommu=on,sm_on,strict", () => {
    bootAndCheck("cm", "intel_iommu=on,sm_on,strict", true, SCALABLE, "DMA", "first stage");

    it("makes Linux flush the PASID structures it made present (PASID cache, context with DID 0), which CM lets the unit cache as not present", () => {
      const run = runOf("cm")();
      expect(getField(run.platform.device.readRegister(Reg.CAP, 8), Cap.CM)).toBe(1n);
      // Beyond the global one after SRTP: one PASID-table entry per device (RID_PASID, edu and virtio-blk), each flushed once present.
      expect(invalidations(run.unit, "pasid-cache")).toBeGreaterThanOrEqual(invalidations(runOf("strict")().unit, "pasid-cache") + 2);
      expect(invalidations(run.unit, "context device")).toBeGreaterThan(invalidations(runOf("strict")().unit, "context device"));
    });

    it("follows the first stage's CM = 0 rules: batching allowed, no invalidation after a map", () => {
      const run = runOf("cm")();
      expect(run.console).not.toContain(CM_BATCHING_LINE);
      const w = linuxFigures(run).workloadUnit;
      expect(invalidations(w, "iotlb page") + invalidations(w, "iotlb domain")).toBe(0);
      // Unmaps only, as without CM (a flush after every map as well would make it about twice as many).
      const cm = pasidIotlbPerMiB(run), strict = pasidIotlbPerMiB(runOf("strict")());
      expect(cm).toBeGreaterThan(0);
      expect(cm).toBeLessThan(1.5 * strict);
    });
  });

  describe("caching mode, intel_iommu=on,sm_on,strict, second stage only", () => {
    bootAndCheck("cmSecond", "intel_iommu=on,sm_on,strict", true, SECOND_STAGE_ONLY, "DMA", "second stage");

    it("follows the second stage's CM rules: batching disallowed, a page-selective IOTLB flush after maps as well as unmaps", () => {
      const run = runOf("cmSecond")();
      expect(run.console).toContain(CM_BATCHING_LINE);
      const f = linuxFigures(run);
      // The flushes after maps are what the unit's negative second-stage entries need; with the unmaps, more than one per page moved.
      expect(invalidations(f.workloadUnit, "iotlb page")).toBeGreaterThan(WORKLOAD_PAGES);
      expect(invalidations(f.workloadUnit, "pasid-iotlb")).toBe(0);
      expect(invalidations(run.unit, "pasid-cache")).toBeGreaterThanOrEqual(invalidations(runOf("strict")().unit, "pasid-cache") + 2);
    });
  });

  describe("intel_iommu=on,sm_on iommu=pt", () => {
    bootAndCheck("pt", "intel_iommu=on,sm_on iommu=pt", false, SCALABLE, "identity", "pass-through");

    passThroughChecks(runOf("pt"), "passes the device's DMA through its PASID-table entry: no page walks, no IOTLB flushes");
  });
});
