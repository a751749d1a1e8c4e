/**
 * `npm run bench:peer` (bench/peer*.ts): its options, the figures it takes from console marks and
 * its table, on recorded samples; then one tiny peer run of the C guest in v86 and under QEMU 10.0
 * (skipped with the reason when QEMU 10.0 or gcc/ld is missing, unless REQUIRE_QEMU=1).
 */
import { describe, expect, it } from "vitest";
import { ensureFirmware, firmwareToolsMissing } from "../firmware/build.ts";
import { qemuUnavailable } from "../firmware/qemu.ts";
import { interleaved, runPeer } from "../bench/peer.ts";
import { qemuMachineArguments } from "../bench/peer-qemu.ts";
import {
  formatPeerTable, linuxSample, parsePeerArguments, peerRows, roundTripSample, runsGuest,
  type ConsoleMark, type LinuxSample, type PeerSamples, type RoundTripSample,
} from "../bench/peer-table.ts";

const linux = (cpuMsPerMiB: number, instructionsPerMiB: number | null = null, writeMiBps = 10, readMiBps = 12): LinuxSample => ({ writeMiBps, readMiBps, cpuMsPerMiB, instructionsPerMiB });
const trip = (cpuUsPerRound: number, wallUsPerRound: number, instructionsPerRound: number | null): RoundTripSample => ({ cpuUsPerRound, wallUsPerRound, instructionsPerRound });

/** Recorded in the shape a run gives (values rounded), three runs. */
const RECORDED: PeerSamples = {
  workloadMiB: 8,
  dmaRounds: { v86: 2000, qemu: 4 },
  linux: [
    { name: "intel_iommu=off", baseline: true, samples: { v86: [linux(30, 160e6), linux(10, 150e6), linux(20, 155e6)], qemu: [linux(4), linux(5), linux(6)] } },
    { name: "intel_iommu=on,strict", baseline: false, samples: { v86: [linux(45, 310e6, 4, 5), linux(50, 300e6, 5, 6), linux(40, 320e6, 6, 7)], qemu: [linux(7), linux(8), linux(7.5)] } },
  ],
  c: [
    { name: "translation off", baseline: true, samples: { v86: [trip(50, 40, 340), trip(60, 50, 340), trip(55, 45, 340)], qemu: [trip(200_100, 200_000, null)] } },
    { name: "CM, translated", baseline: false, samples: { v86: [trip(66, 55, 12_500), trip(70, 60, 12_500), trip(80, 62, 12_500)], qemu: [trip(200_300, 200_000, null)] } },
  ],
};

describe("bench:peer options", () => {
  it("has small defaults and reads every option", () => {
    expect(parsePeerArguments([])).toMatchObject({ runs: 3, workloadMiB: 8, dmaRounds: 2000, qemuDmaRounds: 4, guests: "all", help: false });
    expect(parsePeerArguments(["--runs", "5", "--workload-mib=32", "--dma-rounds", "100", "--qemu-dma-rounds", "2", "--guests", "c"]))
      .toMatchObject({ runs: 5, workloadMiB: 32, dmaRounds: 100, qemuDmaRounds: 2, guests: "c" });
    expect(parsePeerArguments(["-h"]).help).toBe(true);
  });

  it("names the option of every mistake", () => {
    expect(() => parsePeerArguments(["--runs", "0"])).toThrow(/--runs/);
    expect(() => parsePeerArguments(["--workload-mib", "lots"])).toThrow(/--workload-mib/);
    expect(() => parsePeerArguments(["--guests", "windows"])).toThrow(/--guests: expected linux, c or all/);
    expect(() => parsePeerArguments(["--rounds", "3"])).toThrow(/unknown option --rounds/);
  });

  it("runs the guests asked for", () => {
    expect([runsGuest("all", "c"), runsGuest("all", "linux"), runsGuest("c", "linux"), runsGuest("linux", "linux")]).toEqual([true, true, false, true]);
  });

  it("interleaves: each run visits every mode on both emulators, the order rotating", () => {
    const modes = ["off", "lazy", "strict"];
    for (let run = 0; run < 4; run++) {
      const order = interleaved(modes, run);
      expect(order).toHaveLength(6);
      expect(new Set(order.map(([m, e]) => `${m}/${e}`)).size).toBe(6);
      expect(order[0]![0]).toBe(modes[run % 3]);
      expect(order[0]![1]).toBe(run % 2 ? "qemu" : "v86");
    }
  });
});

describe("bench:peer's QEMU machine", () => {
  it("gives intel-iommu the unit's options by QEMU's names, scalable mode included", () => {
    const legacy = qemuMachineArguments("k", "c", { cachingMode: true }).find((a) => a.startsWith("intel-iommu,"));
    expect(legacy).toBe("intel-iommu,intremap=on,eim=off,caching-mode=on,aw-bits=48");
    const scalable = qemuMachineArguments("k", "c", { cachingMode: false, scalableMode: true, firstStage: true }).find((a) => a.startsWith("intel-iommu,"));
    expect(scalable).toBe("intel-iommu,intremap=on,eim=off,caching-mode=off,aw-bits=48,x-scalable-mode=on,x-flts=on");
  });
});

describe("bench:peer's figures from console marks", () => {
  const mark = (line: string, cpuMs: number, wallMs: number, instructions: number | null): ConsoleMark => ({ line, cpuMs, wallMs, instructions });

  it("takes the round trips between the line before the workload's RESULT and that line", () => {
    const marks = [mark("RESULT unmap PASS", 100, 90, 1_000), mark("RESULT unmap.fault PASS", 120, 100, 5_000), mark("RESULT workload.dma-rounds PASS", 320, 260, 405_000), mark("INFO summary", 400, 300, 500_000)];
    expect(roundTripSample(marks, 100)).toEqual({ cpuUsPerRound: 2_000, wallUsPerRound: 1_600, instructionsPerRound: 4_000 });
    expect(roundTripSample(marks.map((m) => ({ ...m, instructions: null })), 100).instructionsPerRound).toBeNull();
    expect(() => roundTripSample([marks[0]!, mark("RESULT workload.dma-rounds FAIL 3 of 100", 1, 1, null)], 100)).toThrow(/failed/);
    expect(() => roundTripSample(marks.slice(0, 2), 100)).toThrow(/no "RESULT workload.dma-rounds"/);
  });

  it("takes Linux's workload between init's marks, per MiB moved both ways", () => {
    const s = linuxSample({
      "write-start": mark("", 1_000, 10_000, 1e9), "write-end": mark("", 1_400, 10_800, 2e9),
      "read-start": mark("", 1_410, 10_810, 2.1e9), "read-end": mark("", 1_800, 11_210, 3e9),
    }, 8);
    expect(s).toEqual({ writeMiBps: 10, readMiBps: 20, cpuMsPerMiB: 50, instructionsPerMiB: 2e9 / 16 });
    expect(() => linuxSample({ "write-start": mark("", 0, 0, null) }, 8)).toThrow(/write-end/);
  });
});

describe("bench:peer's table", () => {
  it("holds medians and each emulator's ratio to its own baseline", () => {
    const rows = peerRows(RECORDED);
    expect(rows).toHaveLength(8);
    const row = (guest: string, mode: string, emulator: string) => rows.find((r) => r[0]!.startsWith(guest) && r[1] === mode && r[2]!.startsWith(emulator))!;
    // v86 strict: CPU median 45 against off's 20; QEMU 7.5 against 5.
    expect(row("Linux", "intel_iommu=on,strict", "v86")).toEqual(["Linux, 8 MiB each way", "intel_iommu=on,strict", "v86 + this unit", "5.00 w / 6.00 r MiB/s", "45.0 ms/MiB", "2.25", "310 M/MiB"]);
    expect(row("Linux", "intel_iommu=on,strict", "QEMU").slice(4)).toEqual(["7.50 ms/MiB", "1.50", "not counted¹"]);
    expect(row("Linux", "intel_iommu=off", "v86").slice(4)).toEqual(["20.0 ms/MiB", "1.00", "155 M/MiB"]);
    expect(row("C guest", "CM, translated", "v86")).toEqual(["C guest, 2000 edu round trips", "CM, translated", "v86 + this unit", "16,667 round trips/s", "70.0 µs/round trip", "1.27", "12.5 k/round trip"]);
    expect(row("C guest", "translation off", "v86").at(-1)).toBe("340/round trip");
    expect(row("C guest", "CM, translated", "QEMU").slice(0, 1).concat(row("C guest", "CM, translated", "QEMU").slice(3, 6)))
      .toEqual(["C guest, 4 edu round trips²", "5.00 round trips/s", "200,300 µs/round trip", "1.00"]);
  });

  it("is one markdown table with the notes its cells point to", () => {
    const text = formatPeerTable(RECORDED);
    const lines = text.split("\n");
    const tableLines = lines.filter((l) => l.startsWith("|"));
    expect(tableLines).toHaveLength(2 + 8);
    for (const l of tableLines) expect(l.split("|").length).toBe(9);
    expect(lines.indexOf("")).toBe(tableLines.length);
    expect(text).toMatch(/^¹ QEMU TCG does not count guest instructions/m);
    expect(text).toMatch(/^² QEMU's edu starts each DMA on a 100 ms/m);
    const v86Only = formatPeerTable({ ...RECORDED, c: [], linux: RECORDED.linux.map((m) => ({ ...m, samples: { ...m.samples, qemu: [] } })) });
    expect(v86Only).not.toMatch(/[¹²]/);
    expect(v86Only.split("\n")).toHaveLength(4);
  });
});

const missing = qemuUnavailable() ?? firmwareToolsMissing();
const required = process.env.REQUIRE_QEMU === "1";

describe.skipIf(missing !== null && !required)(`one tiny peer run of the C guest${missing ? ` (skipped: ${missing})` : ""}`, () => {
  it("gives a row for each emulator and mode, with figures from both", { timeout: 120_000 }, async () => {
    const samples = await runPeer({ kernel: await ensureFirmware(), guests: "c", runs: 1, workloadMiB: 1, dmaRounds: 50, qemuDmaRounds: 1 });
    const rows = peerRows(samples);
    expect(rows.map((r) => `${r[1]} ${r[2]}`)).toEqual([
      "translation off v86 + this unit", "translation off QEMU 10.0 TCG", "CM, translated v86 + this unit", "CM, translated QEMU 10.0 TCG",
    ]);
    for (const mode of samples.c) {
      for (const s of [mode.samples.v86[0]!, mode.samples.qemu[0]!]) expect(s.cpuUsPerRound).toBeGreaterThan(0);
      expect(mode.samples.v86[0]!.instructionsPerRound).toBeGreaterThan(0);
      expect(mode.samples.qemu[0]!.instructionsPerRound).toBeNull();
      // QEMU's edu waits 100 ms of virtual time before each of the two DMAs of a round trip.
      expect(mode.samples.qemu[0]!.wallUsPerRound).toBeGreaterThan(190_000);
    }
  });
});
