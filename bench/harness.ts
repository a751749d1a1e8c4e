/**
 * Benchmark harness: each figure is printed beside a baseline measured in the same run, as a ratio,
 * and kept as a record (`figures`) that `--json FILE` writes and `--compare OLD` checks (compare.ts).
 * A bench file `bench/<topic>.bench.ts` default-exports `async (r: BenchReporter) => void`.
 */
import { cpus } from "node:os";

export interface Measurement {
  /** Nanoseconds per operation (median of the rounds). */
  nsPerOp: number;
  opsPerSecond: number;
}

/** Which way a figure improves: "lower" (times), "higher" (rates), "none" (counts that only describe the run). */
export type Better = "lower" | "higher" | "none";

export interface FigureOptions {
  baseline?: number;
  baselineName?: string;
  target?: string;
  met?: boolean;
  /** Default: "higher" for rates (a unit with "/s"), else "lower". */
  better?: Better;
}

/** One figure as the JSON file holds it. `ratio` is value / baseline (null without a baseline). */
export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  baselineName: string | null;
  ratio: number | null;
  better: Better;
  target: string | null;
  met: boolean | null;
}

export interface MachineInfo {
  cores: number;
  cpu: string;
  node: string;
  platform: string;
}

export interface BenchFile {
  format: "v86-vtd-bench";
  version: 1;
  date: string;
  machine: MachineInfo;
  figures: BenchFigure[];
}

export interface BenchReporter {
  /** Times `fn` (called with an iteration count) in process CPU time and returns ns/op: median of `rounds` rounds. */
  measure(fn: (iterations: number) => void, iterations: number, rounds?: number): Measurement;
  measureAsync(fn: (iterations: number) => Promise<void>, iterations: number, rounds?: number): Promise<Measurement>;
  /** Prints one figure; `baseline` (same units, same run) prints the ratio; `target` prints a pass mark. */
  figure(name: string, value: number, unit: string, options?: FigureOptions): void;
  section(title: string): void;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return { cores: list.length, cpu: list[0]?.model.trim() ?? "unknown", node: process.version, platform: `${process.platform} ${process.arch}` };
}

export function formatMachine(m: MachineInfo): string {
  return `machine: ${m.cores} cores, ${m.cpu}, Node ${m.node}, ${m.platform}`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function createReporter(out: (line: string) => void): BenchReporter & { results: Record<string, number>; figures: BenchFigure[] } {
  const results: Record<string, number> = {};
  const figures: BenchFigure[] = [];
  let section = "";
  const toMeasurement = (ns: number): Measurement => ({ nsPerOp: ns, opsPerSecond: 1e9 / ns });
  return {
    results,
    figures,
    measure(fn, iterations, rounds = 7) {
      fn(Math.max(1, Math.floor(iterations / 10))); // warm-up
      const samples: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // Process CPU time, not wall time: on a shared machine a descheduled loop is not slower
        // (wall time moved 2-4 × between runs under load; CPU time by a few per cent).
        const start = process.cpuUsage();
        fn(iterations);
        const { user, system } = process.cpuUsage(start);
        samples.push(((user + system) * 1000) / iterations);
      }
      return toMeasurement(median(samples));
    },
    async measureAsync(fn, iterations, rounds = 5) {
      await fn(Math.max(1, Math.floor(iterations / 10)));
      const samples: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const start = process.hrtime.bigint();
        await fn(iterations);
        samples.push(Number(process.hrtime.bigint() - start) / iterations);
      }
      return toMeasurement(median(samples));
    },
    figure(name, value, unit, options = {}) {
      results[name] = value;
      const baseline = options.baseline ?? null;
      const ratio = baseline !== null && baseline !== 0 ? value / baseline : null;
      // Names repeat across sections ("  per descriptor"): the JSON key carries the section.
      figures.push({
        name: section ? `${section}: ${name.trim()}` : name.trim(), value, unit, baseline, baselineName: options.baselineName ?? null, ratio,
        better: options.better ?? (/\/s\b|per s\b/.test(unit) ? "higher" : "lower"), target: options.target ?? null, met: options.met ?? null,
      });
      let line = `  ${name}: ${formatNumber(value)} ${unit}`;
      if (baseline !== null) {
        line += `  | baseline${options.baselineName ? ` (${options.baselineName})` : ""} ${formatNumber(baseline)} ${unit}, ratio ${ratio === null ? "n/a" : ratio.toFixed(2)}`;
      }
      if (options.target) line += `  | target ${options.target}${options.met === undefined ? "" : options.met ? " (met)" : " (NOT met)"}`;
      out(line);
    },
    section(title) {
      section = title.replace(/^==\s*|\s*==$/g, "").trim();
      out(`\n${title}`);
    },
  };
}

export function formatNumber(value: number): string {
  if (value >= 1e6) return value.toExponential(3);
  if (value >= 100) return value.toFixed(0);
  if (value >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}
