/** `npm run bench [topic...]`: runs bench/<topic>.bench.ts files and prints figures with same-run baselines. */
import { readdirSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { dirname, join } from "node:path";
import { createReporter, type BenchReporter } from "./harness.ts";

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
if (files.length === 0) {
  console.error(`bench: no bench file matches ${wanted.join(", ")}; have: ${readdirSync(here).filter((f) => f.endsWith(".bench.ts")).join(", ")}`);
  process.exit(2);
}
const reporter = createReporter((line) => console.log(line));
for (const file of files) {
  const module = (await import(pathToFileURL(join(here, file)).href)) as { default: (r: BenchReporter) => Promise<void> | void };
  reporter.section(`== ${file.replace(".bench.ts", "")} ==`);
  await module.default(reporter);
}
