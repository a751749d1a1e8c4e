/**
 * The fuzzer in CI (test/fuzz/): every saved regression (test/fuzz/regressions/*.json, minimised
 * programs of fixed findings) replays clean, and a fixed budget of seeded random programs finds
 * nothing. test/fuzz/pending/ holds findings not fixed yet; it is not replayed here.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generate } from "./fuzz/generate.ts";
import { confirmed, minimise } from "./fuzz/minimise.ts";
import { loadPrograms, programSeed } from "./fuzz/program.ts";
import { runProgram } from "./fuzz/run.ts";

/** Generous: CI machines are shared; the stall findings took seconds. */
const LIMITS = { stepLimitMs: 2000 };
const BUDGET = { seed: 20_240_611, programs: 1500 };
const REGRESSIONS = join(import.meta.dirname, "fuzz", "regressions");

describe("fuzz", () => {
  const saved = existsSync(REGRESSIONS) ? loadPrograms(REGRESSIONS) : [];
  it.each(saved.map((s) => [s.name.split("/").pop()!, s.program] as const))("regression %s replays clean", (_name, program) => {
    const r = runProgram(program, LIMITS);
    expect(r.failure, r.failure && `step ${r.failure.step}: ${r.failure.check}: ${r.failure.message}`).toBeUndefined();
  });

  it(`${BUDGET.programs} seeded programs (seed ${BUDGET.seed}) find nothing`, () => {
    for (let index = 0; index < BUDGET.programs; index++) {
      const program = generate(programSeed(BUDGET.seed, index));
      const r = runProgram(program, LIMITS);
      if (!r.failure || !confirmed(program, r.failure, LIMITS)) continue;
      const m = minimise(program, r.failure, { ...LIMITS, budgetMs: 20_000 });
      expect.fail(
        `program #${index} of seed ${BUDGET.seed}: ${r.failure.check} at step ${r.failure.step}: ${r.failure.message}\n` +
          `minimised (${m.program.steps.length} steps), replay with npm run fuzz -- --replay FILE:\n${JSON.stringify(m.program)}`,
      );
    }
  });
});
