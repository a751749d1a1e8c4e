/**
 * Each invalidation rule, kept and broken: the correct driver's device works; with the rule
 * suppressed (test-only switch) the unit shows why the rule exists. The CM = 1 scenarios live in
 * testing.ts: test/guest-driver-v86.test.ts runs them on v86.
 */
import { describe, expect, it } from "vitest";
import type { DriverRule } from "./options.ts";
import {
  cmContextScenario, cmMapScenario, ruleTags, RULE_IOVA as IOVA, RULE_PHYS_1 as PHYS_1, RULE_PHYS_2 as PHYS_2, seen, SID_A, SID_B, testMachine,
  unflushedTableLines, type TestMachine,
} from "../../test/support/driver-scenarios.ts";

function machine(vtd: Parameters<typeof testMachine>[0], suppress: DriverRule[] = [], mode: "strict" | "lazy" = "strict"): TestMachine {
  const m = testMachine(vtd, { mode, testOnly: { suppress } });
  ruleTags(m);
  return m;
}

describe("CM = 1: context entry not-present -> present", () => {
  const scenario = (suppress: DriverRule[]) => cmContextScenario(expect, machine({ cachingMode: true }, suppress));

  it("kept: device-selective context invalidation (DID 0) then domain-selective IOTLB: the device works", () => {
    expect(scenario([])).toBe(0x1111);
  });

  it("broken: the unit keeps its cached not-present context entry: a stale fault", () => {
    expect(scenario(["cm-context-invalidation"])).toBe("fault ContextEntryNotPresent");
  });

  it("CM = 0 never issues them (a not-present context entry is never cached)", () => {
    const m = machine({ cachingMode: false });
    m.driver.attach(SID_B, m.driver.createDomain());
    expect(seen(m)).toBe("fault ContextEntryNotPresent");
    const d = m.driver.createDomain();
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    const before = m.platform.device.stats.contextInvalidations.device;
    m.driver.attach(SID_A, d);
    expect(m.platform.device.stats.contextInvalidations.device).toBe(before);
    expect(seen(m)).toBe(0x1111);
  });
});

describe("CM = 1: a page-selective invalidation after every map", () => {
  const scenario = (suppress: DriverRule[]) => cmMapScenario(expect, machine({ cachingMode: true }, suppress));

  it("kept: the new mapping is invalidated, the device reads it", () => {
    expect(scenario([])).toEqual({ seen: 0x1111, psi: 1 });
  });

  it("broken: the unit answers from its negative IOTLB entry: a stale fault", () => {
    expect(scenario(["cm-map-invalidation"])).toEqual({ seen: "fault ReadNotPermitted", psi: 0 });
  });

  it("CM = 0: no invalidation after a map (and the device is right without one)", () => {
    const m = machine({ cachingMode: false });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    expect(seen(m)).toBe("fault ReadNotPermitted");
    const before = { ...m.platform.device.stats.iotlbInvalidations };
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(m.platform.device.stats.iotlbInvalidations).toEqual(before);
    expect(seen(m)).toBe(0x1111);
  });
});

describe("CM = 0 with CAP.RWBF: a write-buffer flush instead", () => {
  /** The rule as a checker: every map and attach is followed by a WBF the unit saw. Throws when it is not. */
  const checkWriteBufferFlushes = (suppress: DriverRule[]) => {
    const m = machine({ cachingMode: false, rwbf: true }, suppress);
    const stats = m.platform.device.stats;
    const d = m.driver.createDomain();
    const step = (what: string, op: () => void) => {
      const before = stats.writeBufferFlushes;
      op();
      if (stats.writeBufferFlushes !== before + 1) throw new Error(`${what}: the unit saw ${stats.writeBufferFlushes - before} write-buffer flushes, expected 1`);
    };
    step("attach", () => m.driver.attach(SID_A, d));
    for (let i = 0; i < 4; i++) step(`map ${i}`, () => m.driver.map(d, IOVA + i * 4096, PHYS_1, 4096, "r"));
    return m;
  };

  it("kept: one WBF after each table update that no invalidation follows", () => {
    const m = checkWriteBufferFlushes([]);
    expect(m.driver.counters.writeBufferFlushes).toBe(6); // TE, attach, 4 maps
  });

  it("broken: the checker catches the missing flushes (the model's write buffer is always empty, so DMA cannot show it)", () => {
    expect(() => checkWriteBufferFlushes(["write-buffer-flush"])).toThrow(/attach: the unit saw 0 write-buffer flushes/);
  });

  it("without CAP.RWBF no WBF is ever written", () => {
    const m = machine({ cachingMode: false, rwbf: false });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(m.driver.counters.writeBufferFlushes).toBe(0);
    expect(m.platform.device.stats.writeBufferFlushes).toBe(0);
  });
});

describe("ECAP.C = 0: every table store flushed from the CPU cache", () => {
  const scenario = (suppress: DriverRule[]) => {
    const m = machine({ coherent: false }, suppress);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    return { m, seen: seen(m) };
  };

  it("kept: no table line is left dirty, the device reads through the tables", () => {
    const { m, seen: result } = scenario([]);
    expect(result).toBe(0x1111);
    expect(unflushedTableLines(m)).toEqual([]);
    expect(m.driver.counters.cacheLinesFlushed).toBeGreaterThan(0);
  });

  it("broken: the unit's non-snooped walk reads RAM without the new entries: a fault", () => {
    const { m, seen: result } = scenario(["cpu-cache-flush"]);
    expect(result).toBe("fault RootEntryNotPresent");
    expect(unflushedTableLines(m).length).toBeGreaterThan(0);
    expect(m.driver.counters.cacheLinesFlushed).toBe(0);
  });

  it("ECAP.C = 1: no flush at all", () => {
    const m = machine({ coherent: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe(0x1111);
    expect(m.driver.counters.cacheLinesFlushed).toBe(0);
    expect(m.platform.cache.flushes).toBe(0);
  });
});

describe("a change to a present entry is invalidated before the IOVA is reused", () => {
  const scenario = (suppress: DriverRule[]) => {
    const m = machine({ cachingMode: false }, suppress);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe(0x1111); // now cached
    m.driver.unmap(d, IOVA, 4096);
    const afterUnmap = seen(m);
    m.driver.map(d, IOVA, PHYS_2, 4096, "r");
    return { afterUnmap, afterReuse: seen(m) };
  };

  it("kept (strict): the unmapped buffer faults at once, the reused IOVA reaches the new buffer", () => {
    expect(scenario([])).toEqual({ afterUnmap: "fault ReadNotPermitted", afterReuse: 0x2222 });
  });

  it("broken: the device still reaches the freed buffer, and the reused IOVA goes to the OLD buffer", () => {
    expect(scenario(["unmap-invalidation"])).toEqual({ afterUnmap: 0x1111, afterReuse: 0x1111 });
  });

  it("detach invalidates the context entry: the device can no longer use its cached one", () => {
    const m = machine({ cachingMode: false });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe(0x1111);
    m.driver.detach(SID_A);
    expect(seen(m)).toBe("fault ContextEntryNotPresent");
  });
});

describe("lazy mode: a freed IOVA is reused only after the flush", () => {
  const scenario = (suppress: DriverRule[]) => {
    const m = machine({ cachingMode: false }, suppress, "lazy");
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const first = m.driver.mapBuffer(d, PHYS_1, 4096, "r");
    expect(seen(m, first)).toBe(0x1111);
    m.driver.unmapBuffer(d, first, 4096);
    const second = m.driver.mapBuffer(d, PHYS_2, 4096, "r");
    return { sameIova: second === first, seen: seen(m, second) };
  };

  it("kept: the new buffer gets another IOVA, and the device reaches it", () => {
    expect(scenario([])).toEqual({ sameIova: false, seen: 0x2222 });
  });

  it("broken: the IOVA is reused before the flush and the device reaches the OLD buffer through it", () => {
    expect(scenario(["deferred-iova-reuse"])).toEqual({ sameIova: true, seen: 0x1111 });
  });
});
