/**
 * The driver-bugs catalogue (docs/driver-bugs.md): for every entry, the correct driver gets no
 * checker error and its device sees what it should; the driver with that one mistake gets exactly
 * the expected report, and its device sees the consequence (stale DMA, a fault).
 */
import { describe, expect, it } from "vitest";
import { runScenario, SCENARIOS } from "./scenarios.ts";

describe("driver-bugs catalogue", () => {
  for (const s of SCENARIOS) {
    it(`${s.id}: correct: no report; without ${s.rule}: ${s.report ?? "no report"} and the device sees it`, () => {
      const good = runScenario(s, false);
      expect(good.errors).toEqual([]);
      expect(good.device).toEqual(s.correct);
      const bad = runScenario(s, true);
      expect(bad.errors).toEqual(s.report ? [s.report] : []);
      expect(bad.device).toEqual(s.buggy);
    });
  }

  it("the Asterinas sequence is harmless on a unit with CAP.ESRTPS = 1 (SRTP invalidates)", () => {
    const s = SCENARIOS.find((x) => x.id === "asterinas-root-activation-esrtps0")!;
    const outcome = runScenario({ ...s, vtd: { esrtps: true } }, true);
    expect(outcome.errors).toEqual([]);
    expect(outcome.device).toEqual(s.correct);
  });
});
