/**
 * `npm run bench [topic...] [-- --json FILE] [-- --compare OLD.json]`: runs the benchmarks and
 * prints the machine, then each figure beside a baseline measured in the same run. `--json`
 * writes every figure (name, value, unit, baseline, ratio) to FILE; `--compare` checks this run
 * against an earlier file and exits 1 when a figure is more than 10 % worse (compare.ts). The
 * script bundles this file with esbuild first, so the code is measured as a browser or Node bundle
 * runs it (a TypeScript loader's module indirection would distort hot paths).
 */
import { writeFileSync } from "node:fs";
import { compareFigures, formatComparison, readBenchFile } from "./compare.ts";
import { createReporter, formatMachine, machineInfo, type BenchFile, type BenchReporter } from "./harness.ts";

type Bench = (r: BenchReporter) => Promise<void> | void;
const benches: Record<string, () => Promise<{ default: Bench }>> = {
  device: () => import("./device.bench.ts"),
  scalable: () => import("./scalable.bench.ts"),
  "v86-mmio": () => import("./v86-mmio.bench.ts"),
  "v86-boot": () => import("./v86-boot.bench.ts"),
  "guest-driver": () => import("./guest-driver.bench.ts"),
  notifiers: () => import("./notifiers.bench.ts"),
  interrupts: () => import("./interrupts.bench.ts"),
  "virtio-blk": () => import("./virtio-blk.bench.ts"),
};

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
let jsonPath: string | undefined;
let comparePath: string | undefined;
const wanted: string[] = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i]!;
  if (arg === "--json" || arg === "--compare") {
    const value = args[++i];
    if (!value || value.startsWith("--")) fail(`option ${arg} needs a file name`);
    if (arg === "--json") jsonPath = value;
    else comparePath = value;
  } else if (arg.startsWith("--")) {
    fail(`unknown option ${arg}; options: --json FILE, --compare OLD.json`);
  } else {
    wanted.push(arg);
  }
}
const unknown = wanted.filter((name) => !(name in benches));
if (unknown.length > 0) fail(`unknown topic ${unknown.join(", ")}; topics: ${Object.keys(benches).join(", ")}`);
let old: BenchFile | undefined;
try {
  // Read before the run: a bad file is reported at once, not after minutes of benchmarks.
  if (comparePath) old = readBenchFile(comparePath);
} catch (error) {
  fail((error as Error).message.replace(/^bench /, ""));
}

const machine = machineInfo();
console.log(formatMachine(machine));
const reporter = createReporter((line) => console.log(line));
for (const name of Object.keys(benches).filter((n) => wanted.length === 0 || wanted.includes(n))) {
  reporter.section(`== ${name} ==`);
  await (await benches[name]!()).default(reporter);
}

if (jsonPath) {
  const file: BenchFile = { format: "v86-vtd-bench", version: 1, date: new Date().toISOString(), machine, figures: reporter.figures };
  try {
    writeFileSync(jsonPath, `${JSON.stringify(file, null, 1)}\n`);
  } catch (error) {
    fail(`option --json ${jsonPath}: cannot write it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  console.log(`\n${reporter.figures.length} figures written to ${jsonPath}`);
}
if (old) {
  const comparison = compareFigures(old.figures, reporter.figures);
  console.log(`\n${formatComparison(comparison)}`);
  if (comparison.changes.some((c) => c.flagged)) process.exitCode = 1;
}
