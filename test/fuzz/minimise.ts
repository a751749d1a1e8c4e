/**
 * Delta debugging (Zeller's ddmin) over a failing program's steps, then simpler configuration
 * values: the result still fails the same check.
 */
import type { Config, Program } from "./program.ts";
import { runProgram, type Failure, type RunOptions } from "./run.ts";

export interface MinimiseOptions extends RunOptions {
  /** Host milliseconds to spend at most. */
  budgetMs: number;
}

/** A finding's kind: its check and the words of its message, numbers left out. */
export function signature(f: Failure, words = 100): string {
  const text = f.message.replace(/-?0x[0-9a-f]+|-?\d+(\.\d+)?(e[+-]?\d+)?/g, "#").replace(/#(\|#)+/g, "#");
  return `${f.check}: ${text.split(" ").slice(0, words).join(" ").slice(0, 100)}`;
}

/** A slow step is a finding only if it is slow again (a loaded host or a GC pause is not the unit's doing). */
export function confirmed(program: Program, failure: Failure, options: RunOptions): boolean {
  if (failure.check !== "time") return true;
  const again = runProgram(program, options).failure;
  return again !== undefined && again.check === "time";
}

/** Shrinks `program` while it still fails the same check with a message of the same first words. */
export function minimise(program: Program, failure: Failure, options: MinimiseOptions): { program: Program; failure: Failure; runs: number } {
  const deadline = performance.now() + options.budgetMs;
  let runs = 0;
  let best = { program: structuredClone(program), failure };
  const kind = signature(failure, 8);
  const fails = (candidate: Program): Failure | undefined => {
    runs++;
    const f = runProgram(candidate, options).failure;
    return f && signature(f, 8) === kind ? f : undefined;
  };
  // Steps after the failing one never matter.
  const cut = { config: best.program.config, steps: best.program.steps.slice(0, failure.step + 1) };
  const cutFailure = fails(cut);
  if (cutFailure) best = { program: cut, failure: cutFailure };

  let steps = best.program.steps;
  let n = 2;
  while (steps.length >= 2 && performance.now() < deadline) {
    const chunk = Math.ceil(steps.length / n);
    let reduced = false;
    for (let start = 0; start < steps.length && performance.now() < deadline; start += chunk) {
      const complement = [...steps.slice(0, start), ...steps.slice(start + chunk)];
      const candidate = { config: best.program.config, steps: complement };
      const f = fails(candidate);
      if (f) {
        best = { program: candidate, failure: f };
        steps = complement;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= steps.length) break;
      n = Math.min(steps.length, n * 2);
    }
  }
  // A last pass removing single steps.
  for (let i = steps.length - 1; i >= 0 && performance.now() < deadline; i--) {
    const candidate = { config: best.program.config, steps: [...steps.slice(0, i), ...steps.slice(i + 1)] };
    const f = fails(candidate);
    if (f) {
      best = { program: candidate, failure: f };
      steps = candidate.steps;
    }
  }
  // Simpler configuration values, one at a time.
  const simpler: Partial<Config>[] = [
    { checker: false }, { throwingInterrupt: false }, { trace: false }, { queueDescriptorTimeMs: 0 }, { faultRecords: 1 }, { iotlbEntries: 4096 },
    { contextCacheEntries: 256 }, { passThrough: true }, { ram: 1 << 20 }, { awBits: 48 }, { cachingMode: false, negativeCaching: false },
  ];
  for (const change of simpler) {
    if (performance.now() >= deadline) break;
    const config = { ...best.program.config, ...change };
    if (JSON.stringify(config) === JSON.stringify(best.program.config)) continue;
    const candidate = { config, steps };
    const f = fails(candidate);
    if (f) best = { program: candidate, failure: f };
  }
  return { ...best, runs };
}
