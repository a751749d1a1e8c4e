/**
 * `npm run bench:linux`: the Linux guest's cost of the IOMMU. The same kernel boots with
 * intel_iommu=off (the baseline: the unit is present but Linux leaves it off, so DMA is not
 * translated) and with the unit translating in each mode of the matrix; the modes take turns
 * within each round so host load affects them alike. Figures: boot-to-init (host wall time and
 * guest instructions, the latter independent of host load) and the workload's throughput, guest
 * instructions per MiB and this process's CPU time per MiB (user + system, all threads, from the
 * start of the write to the end of the read). The data is checked on the host's disk image
 * against the pattern's sha256, not by a read-back hash.
 * Scalable-mode modes (Linux's sm_on) are also compared with the legacy mode of the same strictness.
 * Not part of `npm run bench` (it boots Linux ~15 times: a few minutes).
 *
 *   npm run bench:linux [-- --rounds N (default 2) --workload-mib N (default 32) --json FILE]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { ensureLinuxGuest } from "../firmware/linux/build.ts";
import { bootLinux, lastConsoleLines, type LinuxRun } from "../src/linux/boot.ts";
import { hostDiskSha256, linuxFigures } from "../src/linux/summary.ts";
import { totalInvalidations } from "../src/linux/unit-counts.ts";
import { createReporter, formatMachine, machineInfo, type BenchFile, type BenchReporter } from "./harness.ts";
import { LINUX_BASELINE, LINUX_MODES, median, processCpuMs as cpuMs, type LinuxMode } from "./linux-modes.ts";

const BASELINE = LINUX_BASELINE;
const MODES = LINUX_MODES;
type Mode = LinuxMode;

interface Sample {
  initMs: number;
  initInstructions: number;
  writeMiBps: number;
  readMiBps: number;
  invalidationsPerMiB: number;
  translationsPerMiB: number;
  /** Guest instructions from the start of the write to the end of the read, per MiB transferred. */
  instructionsPerMiB: number;
  /** Process CPU time (user + system) over the same span, ms per MiB transferred. */
  cpuMsPerMiB: number;
}

/** Process CPU time at the workload's marks (process.cpuUsage, all threads). */
interface CpuMarks {
  writeStart?: number;
  readEnd?: number;
}

function sample(run: LinuxRun, mode: Mode, cpu: CpuMarks): Sample {
  const f = linuxFigures(run);
  if (run.outcome !== "completed" || !f.workload || f.writeMs === undefined || f.readMs === undefined || !f.workloadUnit || !run.marks.init || cpu.writeStart === undefined || cpu.readEnd === undefined) {
    throw new Error(`bench:linux: the ${mode.name} boot ended with ${run.outcome}:\n${lastConsoleLines(run.console)}`);
  }
  if (hostDiskSha256(run, f.workload.mib) !== f.workload.patternSha256) throw new Error(`bench:linux: ${mode.name}: the host's disk does not hold the pattern the guest wrote`);
  return {
    initMs: run.marks.init.hostMs,
    initInstructions: run.marks.init.instructions,
    writeMiBps: (f.workload.mib * 1000) / f.writeMs,
    readMiBps: (f.workload.mib * 1000) / f.readMs,
    invalidationsPerMiB: totalInvalidations(f.workloadUnit) / f.transferredMiB,
    translationsPerMiB: f.workloadUnit.translations / f.transferredMiB,
    instructionsPerMiB: (run.marks["read-end"]!.instructions - run.marks["write-start"]!.instructions) / f.transferredMiB,
    cpuMsPerMiB: (cpu.readEnd - cpu.writeStart) / f.transferredMiB,
  };
}

function option(argv: string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`bench:linux option ${name}: expected a positive integer, got "${argv[at + 1]}"`);
  return value;
}

export default async function linuxBench(r: BenchReporter, argv: string[] = []): Promise<void> {
  const rounds = option(argv, "--rounds", 2);
  const workloadMiB = option(argv, "--workload-mib", 32);
  // Big enough that dd's start-up and the console marks are small beside the transfer.
  const diskMiB = workloadMiB + 16;
  const memoryMiB = 64 + 2 * workloadMiB + 64;
  const files = await ensureLinuxGuest();
  const bzImage = new Uint8Array(readFileSync(files.bzImage));
  const initrd = new Uint8Array(readFileSync(files.initrd));
  const samples = new Map<string, Sample[]>(MODES.map((m) => [m.name, []]));
  // A first boot warms up V8 (the unit's and the device's code) and is not counted.
  const measured = async (mode: Mode): Promise<Sample> => {
    const cpu: CpuMarks = {};
    const run = await bootLinux({
      bzImage, initrd, cmdline: mode.cmdline, vtd: mode.vtd, workloadMiB, diskMiB, memoryMiB, timeoutMs: 300_000,
      onMark: (mark) => {
        if (mark === "write-start") cpu.writeStart = cpuMs();
        else if (mark === "read-end") cpu.readEnd = cpuMs();
      },
    });
    return sample(run, mode, cpu);
  };
  await measured(MODES[1]!);
  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round so no mode always follows the same one.
    const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]!);
    for (const mode of order) {
      const s = await measured(mode);
      samples.get(mode.name)!.push(s);
      console.error(`  round ${round + 1}/${rounds} ${mode.name}: init ${(s.initMs / 1000).toFixed(2)} s, write ${s.writeMiBps.toFixed(2)} MiB/s, read ${s.readMiBps.toFixed(2)} MiB/s, ${s.cpuMsPerMiB.toFixed(1)} ms CPU per MiB`);
    }
  }
  const med = (name: string, key: keyof Sample) => median(samples.get(name)!.map((s) => s[key]));
  const base = BASELINE.name;
  r.section(`boot to init (median of ${rounds}; baseline: the same kernel with ${base})`);
  for (const mode of MODES) {
    if (mode === BASELINE) continue;
    r.figure(`${mode.name}: host wall time`, med(mode.name, "initMs"), "ms", { baseline: med(base, "initMs"), baselineName: base });
    r.figure(`${mode.name}: guest instructions`, med(mode.name, "initInstructions") / 1e6, "M", { baseline: med(base, "initInstructions") / 1e6, baselineName: base });
  }
  r.section(`workload: ${workloadMiB} MiB written to /dev/vda and read back, O_DIRECT (median of ${rounds}, host wall time)`);
  for (const mode of MODES) {
    const opts = mode === BASELINE ? {} : { baseline: med(base, "writeMiBps"), baselineName: base };
    r.figure(`${mode.name}: write`, med(mode.name, "writeMiBps"), "MiB/s", opts);
    r.figure(`${mode.name}: read`, med(mode.name, "readMiBps"), "MiB/s", mode === BASELINE ? {} : { baseline: med(base, "readMiBps"), baselineName: base });
    r.figure(`${mode.name}: guest instructions per MiB`, med(mode.name, "instructionsPerMiB") / 1e6, "M", mode === BASELINE ? {} : { baseline: med(base, "instructionsPerMiB") / 1e6, baselineName: base });
    r.figure(`${mode.name}: process CPU time per MiB`, med(mode.name, "cpuMsPerMiB"), "ms", mode === BASELINE ? {} : { baseline: med(base, "cpuMsPerMiB"), baselineName: base });
    r.figure(`${mode.name}: invalidations / translations per MiB`, med(mode.name, "invalidationsPerMiB"), `invalidations, ${med(mode.name, "translationsPerMiB").toFixed(0)} translations`, { better: "none" });
  }
  const scalable = MODES.filter((mode) => mode.legacy);
  if (scalable.length) r.section(`scalable mode (QEMU 10.0's x-scalable-mode=on,x-flts=on: first stage) against legacy mode, the same kernel and strictness (median of ${rounds})`);
  for (const mode of scalable) {
    const legacy = { baselineName: mode.legacy! };
    r.figure(`${mode.name}: write`, med(mode.name, "writeMiBps"), "MiB/s", { ...legacy, baseline: med(mode.legacy!, "writeMiBps") });
    r.figure(`${mode.name}: read`, med(mode.name, "readMiBps"), "MiB/s", { ...legacy, baseline: med(mode.legacy!, "readMiBps") });
    r.figure(`${mode.name}: process CPU time per MiB`, med(mode.name, "cpuMsPerMiB"), "ms", { ...legacy, baseline: med(mode.legacy!, "cpuMsPerMiB") });
    r.figure(`${mode.name}: guest instructions per MiB`, med(mode.name, "instructionsPerMiB") / 1e6, "M", { ...legacy, baseline: med(mode.legacy!, "instructionsPerMiB") / 1e6 });
  }
}

// Run directly (npm run bench:linux bundles this file and runs the bundle).
if (/(linux\.bench\.ts|bench-linux\.mjs)$/.test(process.argv[1] ?? "")) {
  const argv = process.argv.slice(2);
  const at = argv.indexOf("--json");
  const jsonPath = at >= 0 ? argv[at + 1] : undefined;
  if (at >= 0 && (!jsonPath || jsonPath.startsWith("--"))) {
    console.error("bench:linux: option --json needs a file name");
    process.exit(2);
  }
  const machine = machineInfo();
  console.log(formatMachine(machine));
  const reporter = createReporter((line) => console.log(line));
  reporter.section("== linux ==");
  linuxBench(reporter, at >= 0 ? [...argv.slice(0, at), ...argv.slice(at + 2)] : argv).then(
    () => {
      if (jsonPath) {
        const file: BenchFile = { format: "v86-vtd-bench", version: 1, date: new Date().toISOString(), machine, figures: reporter.figures };
        writeFileSync(jsonPath, `${JSON.stringify(file, null, 1)}\n`);
      }
      process.exit(0);
    },
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : String(error));
      process.exit(1);
    },
  );
}
