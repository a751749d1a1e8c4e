/**
 * The driver-bugs catalogue (docs/driver-bugs.md): for every entry, the correct driver gets no
 * checker error and its device sees what it should; the driver with that one mistake gets exactly
 * the expected report, and its device sees the consequence (stale DMA, a fault).
 */
import { describe, expect, it } from "vitest";
import { IOVA, PHYS_A, runScenario, SCENARIOS } from "./scenarios.ts";
import { SID_A, testMachine } from "../support/driver-scenarios.ts";

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

describe("driver-bugs catalogue: costs the checker warns about", () => {
  function warnings(m: ReturnType<typeof testMachine>): Record<string, number> {
    return Object.fromEntries(m.platform.device.checker!.summary().map((e) => [e.rule, e.count]));
  }

  it("xen-per-page-flush: 64 pages remapped one at a time, each with its own invalidation, against one range", () => {
    const perPage = testMachine({ checker: true });
    const d = perPage.driver.createDomain();
    perPage.driver.attach(SID_A, d);
    perPage.driver.map(d, IOVA, PHYS_A, 64 * 4096, "rw");
    for (let i = 0; i < 64; i++) perPage.driver.unmap(d, IOVA + i * 4096, 4096);
    expect(warnings(perPage)["page-by-page-invalidation"]).toBe(63);

    const ranged = testMachine({ checker: true });
    const d2 = ranged.driver.createDomain();
    ranged.driver.attach(SID_A, d2);
    ranged.driver.map(d2, IOVA, PHYS_A, 64 * 4096, "rw");
    ranged.driver.deferFlush(() => {
      for (let i = 0; i < 64; i++) ranged.driver.unmap(d2, IOVA + i * 4096, 4096);
    });
    expect(warnings(ranged)["page-by-page-invalidation"]).toBeUndefined();
    expect(Object.keys(warnings(ranged)).filter((rule) => rule !== "invalidation-without-effect")).toEqual([]);
  });

  it("xen-spinning-device-tlb-wait: a polled wait on a device-TLB invalidation that takes 2 s, against waiting by interrupt", async () => {
    const spin = testMachine({ checker: true, deviceIotlb: true, deviceIotlbLatencyMs: 2000 });
    const d = spin.driver.createDomain();
    spin.driver.attach(SID_A, d, { deviceTlb: true });
    spin.driver.map(d, IOVA, PHYS_A, 4096, "rw");
    spin.driver.unmap(d, IOVA, 4096);
    const entry = spin.platform.device.checker!.summary().find((e) => e.rule === "spun-device-tlb-wait")!;
    expect(entry.count).toBe(1);
    expect(entry.totals!.ms).toBeGreaterThanOrEqual(2000);

    const blocked = testMachine({ checker: true, deviceIotlb: true, deviceIotlbLatencyMs: 2000 });
    const d2 = blocked.driver.createDomain();
    blocked.driver.attach(SID_A, d2, { deviceTlb: true });
    blocked.driver.map(d2, IOVA, PHYS_A, 4096, "rw");
    await blocked.platform.settle(blocked.driver.unmapAsync(d2, IOVA, 4096), 50);
    expect(warnings(blocked)["spun-device-tlb-wait"]).toBeUndefined();
  });
});
