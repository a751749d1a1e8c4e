/**
 * `npm run bench:peer`'s options, its samples and its one markdown table (pure: tested on recorded
 * samples in test/bench-peer.test.ts). Each row is the median of a mode's runs on one emulator;
 * the ratio is against the same emulator's own baseline (Linux: intel_iommu=off; the C guest:
 * translation off) measured in the same run.
 */
import { formatUsage, integer, oneOf, option, parseOptions, type ParsedOptions } from "../src/cli/options.ts";
import { median } from "./linux-modes.ts";

export const EMULATORS = ["v86", "qemu"] as const;
export type Emulator = (typeof EMULATORS)[number];
export const EMULATOR_NAMES: Record<Emulator, string> = { v86: "v86 + this unit", qemu: "QEMU 10.0 TCG" };

export const PEER_OPTIONS = {
  runs: option("--runs <n>", integer(1, 50), 3, "interleaved runs of every mode on each emulator (default 3; medians)"),
  workloadMiB: option("--workload-mib <n>", integer(1, 256), 8, "MiB the Linux guest writes and reads back with O_DIRECT (default 8)"),
  dmaRounds: option("--dma-rounds <n>", integer(1, 1_000_000), 2000, "the C guest's edu round trips in v86 (default 2000)"),
  qemuDmaRounds: option("--qemu-dma-rounds <n>", integer(1, 1000), 4, [
    "the C guest's edu round trips in QEMU (default 4: QEMU's edu starts",
    "each DMA 100 ms of virtual time after the command)",
  ]),
  guests: option("--guests linux|c|all", oneOf({ linux: "linux", c: "c", all: "all" } as const), "all" as "linux" | "c" | "all", "which guests to run (default all)"),
};

export type PeerArguments = ParsedOptions<typeof PEER_OPTIONS>;

export const PEER_USAGE = formatUsage(
  `usage: npm run bench:peer -- [options]

Runs the same guests in v86 with this project's VT-d unit and under QEMU 10.0 TCG with its
intel-iommu (q35, the same properties, edu, virtio-blk iommu_platform=on,disable-legacy=on): the
Linux guest (the kernel, initramfs and command line of npm run linux) in every IOMMU mode, and the
C test guest's edu DMA round trips translated and untranslated. Runs are interleaved; the table
holds medians and ratios against each emulator's own baseline.`,
  PEER_OPTIONS,
);

/** Whether a run of `guests` includes `guest`. */
export function runsGuest(guests: PeerArguments["guests"], guest: "linux" | "c"): boolean {
  return guests === "all" || guests === guest;
}

export function parsePeerArguments(argv: readonly string[]): PeerArguments {
  return parseOptions(PEER_OPTIONS, argv);
}

/** One Linux run: the workload's span from the write-start mark to the read-end mark. */
export interface LinuxSample {
  writeMiBps: number;
  readMiBps: number;
  /** Process CPU time (all threads) over the span per MiB moved (written + read), ms. */
  cpuMsPerMiB: number;
  /** Guest instructions per MiB moved, or null where the emulator does not count them. */
  instructionsPerMiB: number | null;
}

/** One C guest run: its edu round trips (2 KiB to the device and back), between the console lines around them. */
export interface RoundTripSample {
  cpuUsPerRound: number;
  wallUsPerRound: number;
  instructionsPerRound: number | null;
}

export interface PeerMode<S> {
  name: string;
  /** The emulator's own baseline for the ratio column. */
  baseline: boolean;
  samples: Record<Emulator, S[]>;
}

export interface PeerSamples {
  workloadMiB: number;
  dmaRounds: Record<Emulator, number>;
  linux: PeerMode<LinuxSample>[];
  c: PeerMode<RoundTripSample>[];
}

/** Why a column is empty for QEMU: printed under the table. */
export const QEMU_INSTRUCTIONS_NOTE =
  "QEMU TCG does not count guest instructions here: -icount would count them but drives the guest clock from them (changing the timing measured), " +
  "and the TCG plugin that counts (libinsn) is not shipped in Debian's qemu-system-x86.";
export const QEMU_EDU_NOTE =
  "QEMU's edu starts each DMA on a 100 ms virtual-clock timer and the C guest polls meanwhile: a round trip is 200 ms of that timer whatever the translation costs, " +
  "and its CPU time is the share of it QEMU was scheduled.";

function fixed(value: number, digits: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A value with about three significant digits. */
function figure(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  const magnitude = Math.abs(value);
  return fixed(value, magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2);
}

function instructions(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "not counted¹";
  if (value >= 1e6) return `${figure(value / 1e6)} M${unit}`;
  return value >= 1e4 ? `${figure(value / 1e3)} k${unit}` : `${fixed(value, 0)}${unit}`;
}

function medianOf<S>(samples: readonly S[], pick: (s: S) => number | null): number {
  const values = samples.map(pick).filter((v): v is number => v !== null);
  return values.length === samples.length ? median(values) : Number.NaN;
}

/** The table's rows, each a list of cells. */
export function peerRows(samples: PeerSamples): string[][] {
  const rows: string[][] = [];
  const linuxGuest = `Linux, ${samples.workloadMiB} MiB each way`;
  const linuxBase = samples.linux.find((m) => m.baseline);
  for (const mode of samples.linux) {
    for (const emulator of EMULATORS) {
      const s = mode.samples[emulator];
      if (s.length === 0) continue;
      const cpu = medianOf(s, (x) => x.cpuMsPerMiB);
      const base = linuxBase ? medianOf(linuxBase.samples[emulator], (x) => x.cpuMsPerMiB) : Number.NaN;
      rows.push([
        linuxGuest, mode.name, EMULATOR_NAMES[emulator],
        `${figure(medianOf(s, (x) => x.writeMiBps))} w / ${figure(medianOf(s, (x) => x.readMiBps))} r MiB/s`,
        `${figure(cpu)} ms/MiB`, fixed(cpu / base, 2),
        instructions(medianOf(s, (x) => x.instructionsPerMiB), "/MiB"),
      ]);
    }
  }
  const cBase = samples.c.find((m) => m.baseline);
  for (const mode of samples.c) {
    for (const emulator of EMULATORS) {
      const s = mode.samples[emulator];
      if (s.length === 0) continue;
      const cpu = medianOf(s, (x) => x.cpuUsPerRound);
      const base = cBase ? medianOf(cBase.samples[emulator], (x) => x.cpuUsPerRound) : Number.NaN;
      rows.push([
        `C guest, ${samples.dmaRounds[emulator]} edu round trips${emulator === "qemu" ? "²" : ""}`, mode.name, EMULATOR_NAMES[emulator],
        `${figure(1e6 / medianOf(s, (x) => x.wallUsPerRound))} round trips/s`,
        `${figure(cpu)} µs/round trip`, fixed(cpu / base, 2),
        instructions(medianOf(s, (x) => x.instructionsPerRound), "/round trip"),
      ]);
    }
  }
  return rows;
}

export const PEER_HEADER = ["guest", "mode", "emulator", "throughput", "process CPU time", "× own baseline", "guest instructions"];

/** The markdown table with its notes. */
export function formatPeerTable(samples: PeerSamples): string {
  const rows = peerRows(samples);
  const lines = [`| ${PEER_HEADER.join(" | ")} |`, `|${PEER_HEADER.map((_, i) => (i >= 3 ? "---:" : "---")).join("|")}|`];
  for (const row of rows) lines.push(`| ${row.join(" | ")} |`);
  const notes: string[] = [];
  if (rows.some((row) => row.at(-1)!.includes("¹"))) notes.push(`¹ ${QEMU_INSTRUCTIONS_NOTE}`);
  if (rows.some((row) => row[0]!.includes("²"))) notes.push(`² ${QEMU_EDU_NOTE}`);
  return [...lines, ...(notes.length ? ["", ...notes] : [])].join("\n");
}

/** A console line as it arrived, with the emulator's cost so far. */
export interface ConsoleMark {
  line: string;
  /** The emulator's process CPU time, ms. */
  cpuMs: number;
  /** Host wall time, ms. */
  wallMs: number;
  /** Guest instructions executed, or null where not counted. */
  instructions: number | null;
}

/** The C guest's line after its round trips (firmware/main.c run_dma_rounds). */
export const ROUND_TRIPS_LINE = "RESULT workload.dma-rounds";

/**
 * The round trips' cost: from the console line just before the workload's RESULT line (the
 * guest prints nothing while it works) to that line. Throws when the workload did not pass.
 */
export function roundTripSample(marks: readonly ConsoleMark[], rounds: number): RoundTripSample {
  const at = marks.findIndex((m) => m.line.startsWith(ROUND_TRIPS_LINE));
  if (at < 1) throw new Error(`no "${ROUND_TRIPS_LINE}" line after another line in the console`);
  const end = marks[at]!;
  if (!/ PASS\b/.test(end.line)) throw new Error(`the C guest's round trips failed: ${end.line}`);
  const start = marks[at - 1]!;
  const instructions = start.instructions === null || end.instructions === null ? null : (end.instructions - start.instructions) / rounds;
  return { cpuUsPerRound: ((end.cpuMs - start.cpuMs) * 1000) / rounds, wallUsPerRound: ((end.wallMs - start.wallMs) * 1000) / rounds, instructionsPerRound: instructions };
}

/** init.sh's marks around the workload (firmware/linux/init.sh). */
export const WORKLOAD_MARKS = ["write-start", "write-end", "read-start", "read-end"] as const;

/** A Linux run's workload figures from its marks (keyed by init.sh's RESULT names). */
export function linuxSample(marks: Partial<Record<(typeof WORKLOAD_MARKS)[number], ConsoleMark>>, mib: number): LinuxSample {
  const [ws, we, rs, re] = WORKLOAD_MARKS.map((name) => {
    const mark = marks[name];
    if (!mark) throw new Error(`the Linux guest printed no ${name} mark`);
    return mark;
  }) as [ConsoleMark, ConsoleMark, ConsoleMark, ConsoleMark];
  const instructions = ws.instructions === null || re.instructions === null ? null : (re.instructions - ws.instructions) / (2 * mib);
  return {
    writeMiBps: (mib * 1000) / (we.wallMs - ws.wallMs),
    readMiBps: (mib * 1000) / (re.wallMs - rs.wallMs),
    cpuMsPerMiB: (re.cpuMs - ws.cpuMs) / (2 * mib),
    instructionsPerMiB: instructions,
  };
}
