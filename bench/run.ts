/**
 * `npm run bench [topic...]`: runs the benchmarks and prints each figure beside a baseline measured
 * in the same run. The script bundles this file with esbuild first, so the code is measured as a
 * browser or Node bundle runs it (a TypeScript loader's module indirection would distort hot paths).
 */
import { createReporter, type BenchReporter } from "./harness.ts";

type Bench = (r: BenchReporter) => Promise<void> | void;
const benches: Record<string, () => Promise<{ default: Bench }>> = {
  device: () => import("./device.bench.ts"),
  "v86-mmio": () => import("./v86-mmio.bench.ts"),
  "v86-boot": () => import("./v86-boot.bench.ts"),
  "guest-driver": () => import("./guest-driver.bench.ts"),
  notifiers: () => import("./notifiers.bench.ts"),
  interrupts: () => import("./interrupts.bench.ts"),
  "virtio-blk": () => import("./virtio-blk.bench.ts"),
};

const wanted = process.argv.slice(2);
const names = Object.keys(benches).filter((name) => wanted.length === 0 || wanted.includes(name));
if (names.length === 0) {
  console.error(`bench: unknown topic ${wanted.join(", ")}; topics: ${Object.keys(benches).join(", ")}`);
  process.exit(2);
}
const reporter = createReporter((line) => console.log(line));
for (const name of names) {
  reporter.section(`== ${name} ==`);
  await (await benches[name]!()).default(reporter);
}
