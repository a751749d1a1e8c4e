/**
 * Benchmark harness: each figure is printed beside a baseline measured in the same run, as a ratio.
 * A bench file `bench/<topic>.bench.ts` default-exports `async (r: BenchReporter) => void`.
 */
export interface Measurement {
  /** Nanoseconds per operation (median of the rounds). */
  nsPerOp: number;
  opsPerSecond: number;
}

export interface BenchReporter {
  /** Times `fn` (called with an iteration count) and returns ns/op: median of `rounds` rounds. */
  measure(fn: (iterations: number) => void, iterations: number, rounds?: number): Measurement;
  measureAsync(fn: (iterations: number) => Promise<void>, iterations: number, rounds?: number): Promise<Measurement>;
  /** Prints one figure; `baseline` (same units, same run) prints the ratio; `target` prints a pass mark. */
  figure(name: string, value: number, unit: string, options?: { baseline?: number; baselineName?: string; target?: string; met?: boolean }): void;
  section(title: string): void;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function createReporter(out: (line: string) => void): BenchReporter & { results: Record<string, number> } {
  const results: Record<string, number> = {};
  const toMeasurement = (ns: number): Measurement => ({ nsPerOp: ns, opsPerSecond: 1e9 / ns });
  return {
    results,
    measure(fn, iterations, rounds = 7) {
      fn(Math.max(1, Math.floor(iterations / 10))); // warm-up
      const samples: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const start = process.hrtime.bigint();
        fn(iterations);
        samples.push(Number(process.hrtime.bigint() - start) / iterations);
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
      let line = `  ${name}: ${formatNumber(value)} ${unit}`;
      if (options.baseline !== undefined) {
        line += `  | baseline${options.baselineName ? ` (${options.baselineName})` : ""} ${formatNumber(options.baseline)} ${unit}, ratio ${(value / options.baseline).toFixed(2)}`;
      }
      if (options.target) line += `  | target ${options.target}${options.met === undefined ? "" : options.met ? " (met)" : " (NOT met)"}`;
      out(line);
    },
    section(title) {
      out(`\n${title}`);
    },
  };
}

function formatNumber(value: number): string {
  if (value >= 1e6) return value.toExponential(3);
  if (value >= 100) return value.toFixed(0);
  if (value >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}
