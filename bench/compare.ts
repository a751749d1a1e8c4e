/**
 * `npm run bench -- --compare OLD.json`: the figures of this run against those of an earlier one.
 * A figure with a baseline is compared by its ratio (value / baseline, both measured in the same
 * run, so a slower or busier machine cancels out); one without, by its value. "Worse" follows the
 * figure's direction (`better`); more than `tolerance` (10 %) worse is flagged.
 */
import { readFileSync } from "node:fs";
import type { BenchFigure, BenchFile } from "./harness.ts";

export interface FigureChange {
  name: string;
  /** What was compared: "ratio" or "value". */
  by: "ratio" | "value";
  old: number;
  now: number;
  /** How much worse, as a fraction (0.25 = 25 % worse; negative = better). */
  worse: number;
  flagged: boolean;
}

export interface Comparison {
  changes: FigureChange[];
  /** Names only in the old file, only in this run. */
  missing: string[];
  added: string[];
}

export const DEFAULT_TOLERANCE = 0.1;

export function compareFigures(old: readonly BenchFigure[], now: readonly BenchFigure[], tolerance = DEFAULT_TOLERANCE): Comparison {
  const before = new Map(old.map((f) => [f.name, f]));
  const changes: FigureChange[] = [];
  const added: string[] = [];
  for (const f of now) {
    const o = before.get(f.name);
    if (!o) {
      added.push(f.name);
      continue;
    }
    if (f.better === "none") continue;
    const byRatio = f.ratio !== null && o.ratio !== null;
    const a = byRatio ? o.ratio! : o.value;
    const b = byRatio ? f.ratio! : f.value;
    let worse: number;
    if (a === b) worse = 0;
    else if (a === 0 || !Number.isFinite(a) || !Number.isFinite(b)) worse = Number.NaN;
    // Lower is better: b/a - 1. Higher is better: a/b - 1 (half the rate is 100 % worse).
    else worse = f.better === "lower" ? b / a - 1 : b === 0 ? Number.POSITIVE_INFINITY : a / b - 1;
    changes.push({ name: f.name, by: byRatio ? "ratio" : "value", old: a, now: b, worse, flagged: worse > tolerance + 1e-9 });
  }
  const current = new Set(now.map((f) => f.name));
  const missing = old.filter((f) => !current.has(f.name)).map((f) => f.name);
  return { changes, missing, added };
}

export function formatComparison(c: Comparison, tolerance = DEFAULT_TOLERANCE): string {
  const limit = `${Math.round(tolerance * 100)} %`;
  const lines = [`== compared with the earlier run (flagged: more than ${limit} worse) ==`];
  for (const ch of c.changes) {
    const pct = Number.isNaN(ch.worse) ? "n/a" : `${ch.worse >= 0 ? "+" : ""}${(ch.worse * 100).toFixed(1)} % ${ch.worse > 0 ? "worse" : "better"}`;
    lines.push(`${ch.flagged ? "WORSE" : "  ok "} ${ch.name}: ${ch.by} ${fmt(ch.old)} → ${fmt(ch.now)} (${pct})`);
  }
  if (c.missing.length) lines.push(`not in this run: ${c.missing.join("; ")}`);
  if (c.added.length) lines.push(`new in this run: ${c.added.join("; ")}`);
  const flagged = c.changes.filter((ch) => ch.flagged).length;
  lines.push(flagged ? `${flagged} figure${flagged === 1 ? "" : "s"} more than ${limit} worse` : `no figure more than ${limit} worse`);
  return lines.join("\n");
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

/** Reads a file `--json` wrote; anything else is refused with an error naming the file and what is wrong. */
export function readBenchFile(path: string): BenchFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`bench --compare ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  return parseBenchFile(text, path);
}

export function parseBenchFile(text: string, path: string): BenchFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`bench --compare ${path}: not JSON (${(error as Error).message})`);
  }
  const file = data as Partial<BenchFile>;
  if (typeof data !== "object" || data === null || file.format !== "v86-vtd-bench") throw new Error(`bench --compare ${path}: not a file written by npm run bench -- --json`);
  if (file.version !== 1) throw new Error(`bench --compare ${path}: version ${String(file.version)} is not 1`);
  if (!Array.isArray(file.figures)) throw new Error(`bench --compare ${path}: no figures list`);
  file.figures.forEach((f: Partial<BenchFigure>, i) => {
    const ok = typeof f === "object" && f !== null && typeof f.name === "string" && typeof f.value === "number" && typeof f.unit === "string" &&
      (f.ratio === null || typeof f.ratio === "number") && (f.baseline === null || typeof f.baseline === "number") &&
      (f.better === "lower" || f.better === "higher" || f.better === "none");
    if (!ok) throw new Error(`bench --compare ${path}: figure ${i} is not { name, value, unit, baseline, ratio, better }`);
  });
  return file as BenchFile;
}
