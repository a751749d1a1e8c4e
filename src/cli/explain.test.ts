import { describe, expect, it } from "vitest";
import { parseArguments } from "./arguments.ts";
import { cachingModeSentence, ExplainRecorder, explainMissingCmInvalidations, explainUnflushedTableWrites, formatCachingModeComparison, type RunFigures } from "./explain.ts";
import { deviceRead, SID_A, testMachine } from "../../test/support/driver-scenarios.ts";
import { scalableMachine } from "../../test/support/scalable-driver.ts";
import { TRACE_EVENT_TYPES, traceEventFilter, TraceOptionError } from "./trace-file.ts";
import { describeDescriptor } from "../vtd-device/debug-view.ts";

function figures(cachingMode: boolean, page: number): RunFigures {
  const invalidations = new Map([["context-cache global", 1], ["iotlb page", page]]);
  return { cachingMode, invalidations, waits: page, descriptors: 2 * page, faults: 1, iotlbMisses: 3, hostMs: 10, outcome: "exit 0" };
}

describe("explain options and texts", () => {
  it("parses the explain options of npm start", () => {
    const a = parseArguments(["--checker", "--dump", "--trace", "t.jsonl", "--trace-events=vtd_inv*", "--compare-caching-mode"]);
    expect(a).toMatchObject({ checker: true, dump: true, trace: "t.jsonl", traceEvents: "vtd_inv*", compareCachingMode: true });
    expect(() => parseArguments(["--trace-events"])).toThrow(/--trace-events needs a value/);
  });

  it("selects trace events by names and globs, refusing what matches nothing", () => {
    expect([...traceEventFilter("vtd_inv*")].sort()).toEqual(["vtd_inv", "vtd_inv_iec", "vtd_inv_pasid", "vtd_inv_wait"]);
    expect([...traceEventFilter("vtd_fault, vtd_ir_*")].sort()).toEqual(["vtd_fault", "vtd_ir_fault", "vtd_ir_remap"]);
    expect(traceEventFilter("*").size).toBe(TRACE_EVENT_TYPES.length);
    expect(() => traceEventFilter("vtd_invalid")).toThrow(TraceOptionError);
    expect(() => traceEventFilter("vtd_inv,")).toThrow(/option --trace-events: "" is not an event name/);
    expect(() => traceEventFilter("(.*)")).toThrow(/is not an event name or glob/);
  });

  it("says why CM=1 changed the invalidations, and shows the difference", () => {
    const off = figures(false, 1), on = figures(true, 8);
    expect(cachingModeSentence(off, on)).toContain("7 more invalidations (+7 iotlb page)");
    expect(cachingModeSentence(off, figures(true, 1))).toContain("the same invalidations under both");
    expect(cachingModeSentence(on, off)).toContain("7 fewer invalidations");
    const table = formatCachingModeComparison(off, on, true);
    expect(table).toMatch(/^invalidations: iotlb page +1 +8 +\+7$/m);
    expect(table).toMatch(/^faults +1 +1 +=$/m);
    expect(table).not.toContain("warms up");
  });

  it("decodes queued-invalidation descriptors", () => {
    expect(describeDescriptor(0x00000000000100f2n, 0x000000000c000009n)).toBe("iotlb page DID 1 ADDR 0xc000000 AM 9");
    expect(describeDescriptor(0x0000002000000031n, 0n)).toBe("context-cache device SID 00:04.0 FM 0 DID 0");
    expect(describeDescriptor(0x0000000600000025n, 0x125080n)).toBe("wait SW data 0x6 to 0x125080");
    expect(describeDescriptor(0x00000000000100e2n, 0n)).toBe("iotlb domain DID 1");
    expect(describeDescriptor(0n, 0n)).toBe("(empty)");
  });

  it("scalable mode: a PASID-table entry made present without the CM = 1 PASID-cache invalidation, and the PASID-cache invalidation that dropped it", () => {
    const recorder = new ExplainRecorder();
    const m = scalableMachine({ cachingMode: true, checker: recorder.checkerOption }, { testOnly: { suppress: ["cm-pasid-invalidation", "cm-context-invalidation"] } });
    recorder.attach(m.platform.device);
    const domain = m.driver.createDomain();
    expect(deviceRead(m.platform, SID_A, 0x10_0000).ok).toBe(false); // not attached: the fault is kept under CM
    m.driver.attach(SID_A, domain);
    m.driver.map(domain, 0x10_0000, 0x40_0000, 4096, "r");
    expect(deviceRead(m.platform, SID_A, 0x10_0000).ok).toBe(false); // the kept fault
    m.driver.detach(SID_A); // its PASID-cache invalidation drops the entry
    const text = explainMissingCmInvalidations(recorder) ?? "";
    expect(text).toMatch(/the guest made the PASID-table entry of PASID 0 of device 00:04\.0 present/);
    expect(text).toMatch(/kept faulting \(1 fault: \w+ 0x[0-9a-f]+\) until the guest's PASID-selective PASID-cache invalidation at [\d.]+ ms dropped it/);
  });

  describe("a cache-line flush left out (ECAP.C = 0), in words", () => {
    const nonCoherent = () => {
      const recorder = new ExplainRecorder();
      const m = testMachine({ coherent: false, checker: recorder.checkerOption }, { testOnly: { suppress: ["cpu-cache-flush"] } });
      recorder.attach(m.platform.device);
      return { recorder, m };
    };

    it("a cleared entry left in the CPU's cache: the device still went through the old mapping after the IOTLB invalidation", () => {
      const { recorder, m } = nonCoherent();
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      m.driver.map(d, 0x10_0000, 0x40_0000, 4096, "r");
      for (const line of m.platform.cache.dirtyLines()) m.platform.cache.flush(line, 64); // the tables so far reach memory
      expect(explainUnflushedTableWrites(recorder)).toBeUndefined();
      m.driver.unmap(d, 0x10_0000, 4096); // the cleared leaf stays in the CPU's cache; the IOTLB invalidation follows
      expect(deviceRead(m.platform, SID_A, 0x10_0000).ok).toBe(true);
      const text = explainUnflushedTableWrites(recorder)!;
      expect(text).toMatch(/^== what happened: a cache-line flush was left out ==\nthe guest stored /);
      expect(text).toMatch(/device 00:04\.0's read at IOVA 0x100000 still went through the old mapping; a CLFLUSH of the line at 0x[0-9a-f]+ .* would have covered it/);
    });

    it("a new entry left in the CPU's cache: the unit read the old, not-present one and the device faulted; no invalidation came after the store", () => {
      const { recorder, m } = nonCoherent();
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d); // CM = 0: a write-buffer flush, no invalidation
      m.driver.map(d, 0x10_0000, 0x40_0000, 4096, "r");
      expect(deviceRead(m.platform, SID_A, 0x10_0000).ok).toBe(false);
      const text = explainUnflushedTableWrites(recorder)!;
      expect(text).toMatch(/device 00:04\.0's read at IOVA 0x100000 met the old entry and faulted \(\w+ 0x[0-9a-f]+\)/);
      expect(text).not.toMatch(/after the guest's invalidations/); // there was none after the store
      expect(text).toContain("(an invalidation empties the unit's caches, not the CPU's)");
    });
  });
});
