/**
 * The checker's summary (`unit.checker.summary()`): reports grouped by rule with count, first
 * example, spec section and fix; and the warnings, each provoked by the guest driver doing
 * something correct but costly, and absent when it does not.
 */
import { describe, expect, it } from "vitest";
import { formatCheckerSummary } from "../../cli/explain.ts";
import { CHECKER_RULES } from "./checker-rules.ts";
import { deviceRead, SID_A, testMachine } from "../../../test/support/driver-scenarios.ts";

const IOVA = 0x4000_0000, PHYS = 0x200_0000;

function warnings(m: ReturnType<typeof testMachine>): Record<string, number> {
  return Object.fromEntries(m.platform.device.checker!.summary().filter((e) => e.severity === "warning").map((e) => [e.rule, e.count]));
}

describe("checker summary and warnings", () => {
  it("groups errors by rule with the first example, the section and the fix; the text form prints them", () => {
    const m = testMachine({ checker: true }, { testOnly: { suppress: ["unmap-invalidation"] } });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    for (let i = 0; i < 3; i++) m.driver.map(d, IOVA + i * 4096, PHYS + i * 4096, 4096, "rw");
    for (let i = 0; i < 3; i++) deviceRead(m.platform, SID_A, IOVA + i * 4096);
    m.driver.unmap(d, IOVA, 3 * 4096);
    for (let i = 0; i < 3; i++) deviceRead(m.platform, SID_A, IOVA + i * 4096);
    const errors = m.platform.device.checker!.summary().filter((e) => e.severity === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ rule: "stale-cache", count: 3, section: CHECKER_RULES["stale-cache"].section, fix: CHECKER_RULES["stale-cache"].fix });
    expect(errors[0]!.first).toMatch(/^driver bug \(stale-cache\): 00:04\.0 read at IOVA 0x40000000/);
    const text = formatCheckerSummary(errors).join("\n");
    expect(text).toContain("error stale-cache ×3 (VT-d §6.5)");
    expect(text).toContain("fix: After changing or removing a present entry");
  });

  it("page-by-page-invalidation: adjacent pages unmapped one by one with no DMA between; one range unmap gives none", () => {
    const m = testMachine({ checker: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, 8 * 4096, "rw");
    for (let i = 0; i < 8; i++) m.driver.unmap(d, IOVA + i * 4096, 4096);
    const entry = m.platform.device.checker!.summary().find((e) => e.rule === "page-by-page-invalidation")!;
    expect(entry).toMatchObject({ count: 7, totals: { runs: 1 } });
    expect(entry.first).toMatch(/DID 1: page-selective invalidations of adjacent ranges from 0x40000000/);

    const ranged = testMachine({ checker: true });
    const d2 = ranged.driver.createDomain();
    ranged.driver.attach(SID_A, d2);
    ranged.driver.map(d2, IOVA, PHYS, 8 * 4096, "rw");
    ranged.driver.unmap(d2, IOVA, 8 * 4096);
    expect(warnings(ranged)["page-by-page-invalidation"]).toBeUndefined();
  });

  it("DMA between adjacent unmaps (what a device doing I/O looks like) is no page-by-page run", () => {
    const m = testMachine({ checker: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, 4 * 4096, "rw");
    for (let i = 0; i < 4; i++) {
      deviceRead(m.platform, SID_A, IOVA + 3 * 4096);
      m.driver.unmap(d, IOVA + i * 4096, 4096);
    }
    expect(warnings(m)["page-by-page-invalidation"]).toBeUndefined();
  });

  // spun-device-tlb-wait: test/driver-bugs (xen-spinning-device-tlb-wait), polled and by interrupt.

  it("invalidation-without-effect and global-invalidation", () => {
    const m = testMachine({ checker: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, 4096, "rw");
    const before = warnings(m);
    expect(before["global-invalidation"]).toBeUndefined(); // the ones after SRTP are required (ESRTPS = 0)
    m.driver.unmap(d, IOVA, 4096); // nothing was cached: no effect
    expect(warnings(m)["invalidation-without-effect"]).toBe((before["invalidation-without-effect"] ?? 0) + 1);
    m.driver.map(d, IOVA, PHYS, 4096, "rw");
    deviceRead(m.platform, SID_A, IOVA);
    const count = warnings(m)["invalidation-without-effect"];
    m.driver.runInvalidations([{ kind: "iotlb-global" }]); // drops the cached entry: an effect, but global
    expect(warnings(m)["invalidation-without-effect"]).toBe(count);
    expect(warnings(m)["global-invalidation"]).toBe(1);
  });
});

describe("checker on interrupt requests: anything a device sends", () => {
  it("random requests and random IRTEs never throw, and every report is about a cached IRTE that differs from the table", () => {
    const m = testMachine({ checker: true, cachingMode: true, interruptRemapping: true });
    const table = m.driver.interruptTableAddress!;
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const odd: unknown[] = [NaN, -1, 2 ** 40, 1.5, "x", undefined, 0xfee0_0010n, 1n << 70n];
    for (let i = 0; i < 3000; i++) {
      if (i % 7 === 0) m.platform.ram.write(BigInt(table + 16 * (next() % 256)), new Uint8Array([next() & 0xff, next() & 0xff, next() & 0xff, next() & 0xff]));
      // Mostly remappable-format requests for the table's 256 entries, some anything in the interrupt range.
      const address = i % 50 === 0 ? odd[i % odd.length] : i % 3 === 0 ? (0xfee0_0000 | (next() & 0xf_fffc)) >>> 0 : (0xfee0_0010 | ((next() % 256) << 5)) >>> 0;
      const data = i % 60 === 0 ? odd[(i >> 2) % odd.length] : i % 5 === 0 ? next() : 0;
      expect(() => m.platform.device.interruptRequest(next() & 0xffff, address as number, data as number)).not.toThrow();
    }
    expect(m.platform.device.checker!.reports.length).toBeGreaterThan(0);
    for (const r of m.platform.device.checker!.reports) {
      expect(r.cached).toMatchObject({ structure: "table-entry", table: "interrupt-remapping" });
      expect((r.cached as { value: bigint }).value).not.toBe((r.current as { value: bigint }).value);
    }
  });
});
