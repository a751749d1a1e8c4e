/**
 * ECAP.C = 0 on v86: the guest's CLFLUSHes reach the unit (src/v86/clflush.ts, linear-address.ts)
 * and the unit reads each table line as the guest last flushed it (memory/cpu-caches.ts). The C
 * guest's `skip-cache-flush` clears an unmapped page's entry without flushing its line, invalidates
 * the IOTLB and DMAs: on v86 the device still reaches the page, and the checker names the line.
 * QEMU 10.0 reports ECAP.C = 0 too but reads the CPU's stores at once (its memory is coherent), as
 * our unit does without the option: there the transcript is the same as QEMU's, and with the
 * option it differs in exactly the observation. With ECAP.C = 1 the guest flushes nothing.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureFirmware, firmwareToolsMissing } from "../firmware/build.ts";
import { parseTranscript, qemuUnavailable, runOnQemu } from "../firmware/qemu.ts";
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { runMultibootGuest } from "../src/v86/run-guest.ts";
import type { DriverBugReport, VtdOptions } from "../src/vtd-device/index.ts";

const toolsMissing = firmwareToolsMissing();
const qemuMissing = qemuUnavailable();
const compareWithQemu = qemuMissing === null || process.env.REQUIRE_QEMU === "1";
if (toolsMissing) console.warn(`cache-flush.test skipped: ${toolsMissing}`);
else if (!compareWithQemu) console.warn(`cache-flush.test: QEMU comparison skipped: ${qemuMissing}`);

const CMDLINE = "skip-cache-flush";
const OBSERVED = "RESULT flush.stale-entry OBSERVED";
const NOT_OBSERVED = "RESULT flush.stale-entry NOT-OBSERVED";

/** RESULT and INFO lines, without the summary (as test/guest-transcripts.test.ts compares). */
function comparable(transcript: string): string[] {
  return parseTranscript(transcript)
    .filter((line) => line.kind !== "PLATFORM" && line.name !== "summary")
    .map((line) => `${line.kind} ${line.name}${line.value ? ` ${line.value}` : ""}`);
}

async function onV86(vtd: Omit<VtdOptions, "memory" | "onInterrupt">): Promise<{ transcript: string; exitCode: number | null; reports: DriverBugReport[]; flushes: number }> {
  const kernel = new Uint8Array(readFileSync(await ensureFirmware()));
  const reports: DriverBugReport[] = [];
  let flushes = () => 0;
  const run = await runMultibootGuest({
    kernel, cmdline: CMDLINE, timeoutMs: 60_000, eduDmaMask: EDU_FULL_DMA_MASK,
    vtd: { awBits: 39, ...vtd, checker: { onReport: (r) => void reports.push(r) } },
    onReady: ({ device }) => void (flushes = () => device.cpuCaches?.tableLineFlushes ?? 0),
  });
  return { transcript: run.transcript, exitCode: run.exitCode, reports, flushes: flushes() };
}

describe.skipIf(toolsMissing !== null)("a skipped cache-line flush (ECAP.C = 0) on v86", () => {
  let modelled: Awaited<ReturnType<typeof onV86>>;
  let coherentMemory: Awaited<ReturnType<typeof onV86>>;

  beforeAll(async () => {
    modelled = await onV86({});
    coherentMemory = await onV86({ cacheLineFlushes: false });
  }, 120_000);

  it("the device still reaches the unmapped page after the IOTLB invalidation; every check passes", () => {
    expect(modelled.transcript).toContain(OBSERVED);
    expect(modelled.transcript).toContain("INFO count.cache-flushes-skipped 1");
    const failures = parseTranscript(modelled.transcript).filter((l) => l.kind === "RESULT" && l.value !== "PASS" && l.name !== "flush.stale-entry");
    expect(failures, modelled.transcript).toEqual([]);
    expect(modelled.exitCode).toBe(0);
    // The guest's own flushes reached the unit as physical lines of tables it had read.
    expect(modelled.flushes).toBeGreaterThan(0);
  });

  it("the checker names the entry, the two values and the line to flush; nothing else", () => {
    expect(modelled.reports.map((r) => r.kind)).toEqual(["unflushed-table-write"]);
    const r = modelled.reports[0]!;
    expect(r.cached).toMatchObject({ structure: "table-entry", table: "paging", level: 1 });
    expect(r.current).toMatchObject({ structure: "table-entry", table: "paging", level: 1, value: 0n });
    expect((r.cached as { value: bigint }).value & 3n).toBe(3n); // the old present read/write entry
    const address = (r.cached as { address: bigint }).address;
    expect(r.missing).toMatchObject({ action: "cache-line-flush", line: address - (address % 64n) });
  });

  it("without the option the unit reads the CPU's stores at once: nothing stale, no report", () => {
    expect(coherentMemory.transcript).toContain(NOT_OBSERVED);
    expect(coherentMemory.reports).toEqual([]);
    expect(coherentMemory.exitCode).toBe(0);
  });

  it("with ECAP.C = 1 the guest flushes no table and the option does not apply", async () => {
    const run = await onV86({ coherent: true });
    expect(run.transcript).toContain("INFO flush.skip not applicable (ECAP.C = 1)");
    expect(run.transcript).not.toContain("flush.stale-entry");
    expect(run.transcript).toContain("INFO count.table-flushes 0");
    expect(run.exitCode).toBe(0);
  }, 60_000);

  it.skipIf(!compareWithQemu)("QEMU 10.0 (ECAP.C = 0, coherent memory) gives the transcript of the unit without the option; with it, only the observation differs", async () => {
    const q = await runOnQemu({ kernel: await ensureFirmware(), awBits: 39, cmdline: CMDLINE });
    expect(q.exitCode, q.transcript + q.diagnostics).toBe(0);
    const qemuLines = comparable(q.transcript);
    expect(qemuLines).toContain(NOT_OBSERVED);
    expect(comparable(coherentMemory.transcript)).toEqual(qemuLines);
    expect(comparable(modelled.transcript)).toEqual(qemuLines.map((line) => (line === NOT_OBSERVED ? OBSERVED : line)));
  }, 60_000);
});
