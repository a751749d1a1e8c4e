/**
 * `npm run demo:figures`: the demo's figures, measured in headless chromium (the browser test's
 * setup): what the page loads, the guest's boot time in the page against `npm start`, and how
 * much the panels slow the guest (the same DMA workload with the panels shown and hidden, on a
 * deterministic machine so both do exactly the same guest instructions; runs alternated, each
 * pair's ratio taken, the median reported). Prints the figures and writes build/demo-figures.json.
 *
 *   npm run demo:figures [-- --runs 5 --rounds 5000]
 *
 * Times are host times on a shared machine: read them with the load average printed beside them.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { chromium, type Browser } from "playwright-core";
import { buildDemo } from "./build.ts";
import { serveDirectory } from "./serve.ts";

const ROOT = resolve(import.meta.dirname, "..");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

interface PageRun {
  bootToExitMs: number;
  assetsMs: number;
  loadBytes: number;
  drawMs: number;
  refreshes: number;
  instructions: number;
  /** CPU seconds of the page's main thread and of its renderer process (Chrome's ThreadTime, ProcessTime), from load to the guest's exit. */
  threadTime: number;
  processTime: number;
}

function option(argv: string[], name: string, fallback: number, max: number): number {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`option ${name}: expected an integer 1..${max}, got ${argv[at + 1] ?? "nothing"}`);
  return value;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function pageRun(browser: Browser, url: string): Promise<PageRun> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Performance.enable");
    await page.goto(url);
    await page.waitForFunction("window.demo && ['finished', 'failed'].includes(window.demo.figures.state)", null, { timeout: 300_000 });
    const { metrics } = await cdp.send("Performance.getMetrics");
    const metric = (name: string) => metrics.find((m) => m.name === name)?.value ?? Number.NaN;
    const f = JSON.parse(String(await page.evaluate("JSON.stringify({ ...window.demo.figures, instructions: window.demo.session.outcome.instructions, exitCode: window.demo.session.outcome.exitCode })"))) as PageRun & { state: string; exitCode: number };
    if (f.state !== "finished" || f.exitCode !== 0) throw new Error(`${url}: the guest did not pass (state ${f.state}, exit ${f.exitCode})`);
    return { ...f, threadTime: metric("ThreadTime"), processTime: metric("ProcessTime") };
  } finally {
    await page.close();
  }
}

/** `npm start` once: the host time it reports for the guest (machine creation, v86 compile included, to exit). */
function npmStart(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("npm", ["start", "--silent"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const found = /^guest: exit 0 after ([\d.]+) s/m.exec(out);
      if (code !== 0 || !found) reject(new Error(`npm start: exit ${code}, no "guest: exit 0 after" line`));
      else resolvePromise(Number(found[1]) * 1000);
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const runs = option(argv, "--runs", 5, 50);
  const rounds = option(argv, "--rounds", 5000, 100_000);
  const site = await buildDemo(join(ROOT, "build", "demo-figures-site"));
  // What the page fetches by default: everything but source maps and the Linux guest (fetched when chosen).
  const gzipped = (files: { path: string }[]) => files.reduce((sum, f) => sum + gzipSync(readFileSync(join(site.directory, f.path)), { level: 9 }).length, 0);
  const fetched = site.files.filter((f) => !f.path.endsWith(".map") && !f.path.startsWith("guests/linux/"));
  const linuxFiles = site.files.filter((f) => f.path.startsWith("guests/linux/"));
  const gzip = gzipped(fetched);
  const { server, url } = await serveDirectory(site.directory, 0);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const load = () => loadavg()[0]!.toFixed(1);
  try {
    const boots: PageRun[] = [];
    const starts: number[] = [];
    for (let i = 0; i < runs; i++) {
      boots.push(await pageRun(browser, url));
      starts.push(await npmStart());
    }
    const shown: PageRun[] = [];
    const hidden: PageRun[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first, so a drift of the machine's load falls on both.
      const order = i % 2 === 0 ? [true, false] : [false, true];
      for (const panels of order) (panels ? shown : hidden).push(await pageRun(browser, `${url}?det=1&rounds=${rounds}${panels ? "" : "&panels=0"}`));
    }
    const sameWork = shown.every((r) => r.instructions === hidden[0]!.instructions) && hidden.every((r) => r.instructions === hidden[0]!.instructions);
    const ratios = shown.map((r, i) => r.bootToExitMs / hidden[i]!.bootToExitMs);
    // CPU the page's main thread used, which other processes' load does not inflate as it does wall time.
    const cpuRatios = shown.map((r, i) => r.threadTime / hidden[i]!.threadTime);
    const figures = {
      loadAverage: load(),
      site: {
        files: fetched.map((f) => `${f.path} ${f.bytes}`), bytes: fetched.reduce((s, f) => s + f.bytes, 0), gzipBytes: gzip, pageFetchedBytes: boots[0]!.loadBytes,
        linuxBytes: linuxFiles.reduce((s, f) => s + f.bytes, 0), linuxGzipBytes: gzipped(linuxFiles),
      },
      boot: {
        pageBootToExitMs: median(boots.map((b) => b.bootToExitMs)),
        pageAssetsMs: median(boots.map((b) => b.assetsMs)),
        npmStartMs: median(starts),
        runs,
      },
      panels: {
        rounds,
        shownMs: median(shown.map((r) => r.bootToExitMs)),
        hiddenMs: median(hidden.map((r) => r.bootToExitMs)),
        shownDrawMs: median(shown.map((r) => r.drawMs)),
        shownRefreshes: median(shown.map((r) => r.refreshes)),
        medianPairRatio: median(ratios),
        mainThreadCpuRatio: median(cpuRatios),
        shownThreadSeconds: median(shown.map((r) => r.threadTime)),
        hiddenThreadSeconds: median(hidden.map((r) => r.threadTime)),
        sameInstructions: sameWork,
        instructions: hidden[0]!.instructions,
        all: { shown: shown.map((r) => Math.round(r.bootToExitMs)), hidden: hidden.map((r) => Math.round(r.bootToExitMs)) },
      },
    };
    const slowdown = figures.panels.medianPairRatio - 1;
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    console.log(`demo figures (medians of ${runs} runs; 1-minute load average ${figures.loadAverage})`);
    console.log(`  page load: ${kib(figures.site.bytes)} fetched uncompressed (${kib(figures.site.gzipBytes)} gzipped), ${kib(figures.site.pageFetchedBytes)} counted by the page; ${figures.site.files.join(", ")}`);
    if (linuxFiles.length) console.log(`  the Linux guest adds ${kib(figures.site.linuxBytes)} (${kib(figures.site.linuxGzipBytes)} gzipped) when chosen`);
    console.log(`  boot to exit, C test guest: page ${figures.boot.pageBootToExitMs.toFixed(0)} ms (+ ${figures.boot.pageAssetsMs.toFixed(0)} ms fetching and compiling v86) vs npm start ${figures.boot.npmStartMs.toFixed(0)} ms (compile included)`);
    console.log(`  panels, dma-rounds=${rounds}, deterministic (${figures.panels.instructions} guest instructions${sameWork ? " in every run" : ", NOT the same in every run"}):`);
    console.log(`    shown ${figures.panels.shownMs.toFixed(0)} ms (drawing ${figures.panels.shownDrawMs.toFixed(0)} ms in ${figures.panels.shownRefreshes} refreshes) vs hidden ${figures.panels.hiddenMs.toFixed(0)} ms; median of the pairs' ratios ${figures.panels.medianPairRatio.toFixed(3)}: ${(slowdown * 100).toFixed(1)}% slower`);
    console.log(`    main-thread CPU: shown ${figures.panels.shownThreadSeconds.toFixed(2)} s vs hidden ${figures.panels.hiddenThreadSeconds.toFixed(2)} s; median of the pairs' ratios ${figures.panels.mainThreadCpuRatio.toFixed(3)}: ${((figures.panels.mainThreadCpuRatio - 1) * 100).toFixed(1)}% more`);
    console.log(`    every run (ms): shown ${figures.panels.all.shown.join(" ")}; hidden ${figures.panels.all.hidden.join(" ")}`);
    mkdirSync(join(ROOT, "build"), { recursive: true });
    writeFileSync(join(ROOT, "build", "demo-figures.json"), `${JSON.stringify({ ...figures, slowdown }, null, 2)}\n`);
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
