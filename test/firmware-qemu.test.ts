/**
 * The bare-metal VT-d test guest (firmware/) on the reference platform, QEMU 10.0's intel-iommu:
 * every RESULT line must be PASS, with caching mode off and on, and with register-based
 * invalidation, on 39-bit (3-level) tables as before (QEMU 7.2's default width, now passed as
 * aw-bits=39), and once on QEMU 10.0's default 48-bit width; the scalable-mode section with
 * x-scalable-mode=on (second stage) and x-flts=on (first stage alone). Skipped with the reason when QEMU
 * 10.0 (or gcc/ld) is missing, unless REQUIRE_QEMU=1.
 */
import { describe, expect, it } from "vitest";
import { ensureFirmware, firmwareToolsMissing } from "../firmware/build.ts";
import { qemuUnavailable, results, runOnQemu, type QemuRunOptions } from "../firmware/qemu.ts";

const missing = qemuUnavailable() ?? firmwareToolsMissing();
const required = process.env.REQUIRE_QEMU === "1";
if (missing && !required) console.warn(`firmware-qemu.test skipped: ${missing}`);

/** RESULT lines that report an observation instead of PASS or FAIL. */
const OBSERVATIONS = new Set(["sm.ss.iotlb.before", "sm.fs.iotlb.before"]);

async function expectAllPass(options: Omit<QemuRunOptions, "kernel">, label: string): Promise<string> {
  const run = await runOnQemu({ kernel: await ensureFirmware(), ...options });
  const lines = results(run.transcript);
  console.log(`QEMU ${label}: ${lines.length} RESULT lines, boot to exit ${run.elapsedMs.toFixed(0)} ms`);
  expect(lines.length, `${run.transcript}\n${run.diagnostics}`).toBeGreaterThanOrEqual(35);
  expect(lines.filter((line) => line.value !== "PASS" && !OBSERVATIONS.has(line.name)), run.transcript).toEqual([]);
  expect(run.transcript).toMatch(/^INFO summary passed \d+ failed 0$/m);
  expect({ exitCode: run.exitCode, timedOut: run.timedOut }, run.diagnostics).toEqual({ exitCode: 0, timedOut: false });
  return run.transcript;
}

describe.skipIf(missing !== null && !required).concurrent("the VT-d test guest on QEMU 10.0", () => {
  it("has QEMU 10.0 with intel-iommu, edu and isa-debug-exit, and gcc/ld", () => {
    expect(missing).toBeNull();
  });

  it("passes every check with caching-mode=off", async () => {
    const transcript = await expectAllPass({ cachingMode: false, awBits: 39 }, "CM=0");
    expect(transcript).toContain("INFO unit.caching-mode 0");
    expect(transcript).toContain("INFO invalidation queued");
  });

  it("passes every check with caching-mode=on", async () => {
    const transcript = await expectAllPass({ cachingMode: true, awBits: 39 }, "CM=1");
    expect(transcript).toContain("INFO unit.caching-mode 1");
    // CM = 1: device-selective context invalidation after the context entry, PSI after each map.
    expect(transcript).toMatch(/^INFO count\.context-cache global 1 domain 0 device 1$/m);
    expect(transcript).toMatch(/^INFO count\.iotlb global 1 domain 1 page [1-9]\d*$/m);
  });

  it("passes every check with register-based invalidation (no-qi, caching-mode=on)", async () => {
    const transcript = await expectAllPass({ cachingMode: true, awBits: 39, cmdline: "no-qi" }, "CM=1 no-qi");
    expect(transcript).toContain("INFO invalidation register-based (option no-qi)");
  });

  it("passes every check with QEMU 10.0's default address width (aw-bits=48, caching-mode=off)", async () => {
    const transcript = await expectAllPass({ cachingMode: false, awBits: 48 }, "CM=0 aw-bits=48");
    expect(transcript).toContain("INFO unit.caching-mode 0");
  });

  it("passes every check in scalable mode, second stage (x-scalable-mode=on): the changed leaf is used until the IOTLB invalidation", async () => {
    const transcript = await expectAllPass({ cachingMode: false, awBits: 48, scalableMode: true, cmdline: "scalable" }, "scalable second stage");
    expect(transcript).toContain("INFO sm.stages first 0 second 1");
    expect(transcript).toContain("RESULT sm.ss.iotlb.before old");
    expect(transcript).toContain("RESULT sm.ss.pasid-cache.after PASS");
    expect(transcript).not.toContain("RESULT root.set"); // the legacy translation checks did not run
  });

  it("passes every check in scalable mode, first stage alone (x-flts=on): A and D set, PASID-based IOTLB invalidation", async () => {
    const transcript = await expectAllPass({ cachingMode: false, awBits: 48, scalableMode: true, firstStage: true, cmdline: "scalable" }, "scalable first stage");
    expect(transcript).toContain("INFO sm.stages first 1 second 0");
    expect(transcript).toContain("RESULT sm.fs.accessed-dirty PASS");
    expect(transcript).toContain("RESULT sm.fs.iotlb.before old");
    expect(transcript).toMatch(/^INFO sm\.count pasid-cache [1-9]\d* pasid-iotlb [1-9]\d*$/m);
  });
});
