/**
 * The strict checker in scalable mode, driven by the guest driver: each invalidation the driver
 * owes, skipped (the driver's test-only switches), gives its report (stale PASID-cache entry,
 * stale first-stage and second-stage IOTLB entries, the CM invalidation of a second-stage mapping
 * and of a PASID-table entry) with the entries involved and the invalidation that would have
 * covered it; the correct driver, in every configuration, gives none.
 */
import { describe, expect, it } from "vitest";
import { FaultReason } from "../spec/fault-reasons.ts";
import type { DriverBugReport } from "../vtd-device/checker/checker-report.ts";
import { deviceRead, deviceWrite, SID_A, tag } from "../../test/support/driver-scenarios.ts";
import { SCALABLE_DRIVER_CASES, scalableMachine } from "../../test/support/scalable-driver.ts";
import type { DriverOptions, DriverRule } from "./options.ts";

const PHYS = 0x40_0000;
const IOVA = 0x10_0000;
const PAGE = 4096;

function checkedMachine(cm: boolean, driver: DriverOptions, suppress: DriverRule[] = []) {
  const reports: DriverBugReport[] = [];
  const m = scalableMachine({ cachingMode: cm, checker: { onReport: (r) => reports.push(r) } }, { ...driver, testOnly: { suppress } });
  return { ...m, reports };
}

describe("a driver that skips an invalidation is reported", () => {
  it("stale PASID-cache entry: the PASID entry rewritten for another domain without a PASID-cache invalidation", () => {
    const m = checkedMachine(false, { stage: "second" }, ["unmap-invalidation"]);
    const d1 = m.driver.createDomain(), d2 = m.driver.createDomain();
    m.driver.attach(SID_A, d1);
    m.driver.map(d1, IOVA, PHYS, PAGE, "rw");
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(true); // the unit caches the PASID entry (DID d1)
    m.driver.detach(SID_A); // suppressed: nothing invalidated
    m.driver.attach(SID_A, d2);
    m.driver.map(d2, IOVA, PHYS + PAGE, PAGE, "rw");
    deviceRead(m.platform, SID_A, IOVA);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache", sid: SID_A, iova: BigInt(IOVA),
      cached: { structure: "pasid-entry", present: true, pasid: 0, did: d1.did, pgtt: 2, tableRoot: BigInt(d1.tables.root) },
      current: { structure: "pasid-entry", present: true, pasid: 0, did: d2.did, pgtt: 2, tableRoot: BigInt(d2.tables.root) },
      missing: { action: "pasid-cache-invalidation", granularity: "pasid", did: d1.did, pasid: 0 },
    });
    expect(m.reports[0]!.missing.text).toMatch(/PASID-selective PASID-cache invalidation \(VT-d §6\.5\.2\.2\) DID 1 PASID 0/);
  });

  for (const stage of ["first", "second"] as const) {
    it(`stale ${stage}-stage IOTLB entry: an unmap without its invalidation`, () => {
      const m = checkedMachine(false, { stage }, ["unmap-invalidation"]);
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      m.driver.map(d, IOVA, PHYS, PAGE, "rw");
      expect(deviceWrite(m.platform, SID_A, IOVA, new Uint8Array(4)).ok).toBe(true);
      m.driver.unmap(d, IOVA, PAGE);
      expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(true); // the stale entry still serves
      deviceRead(m.platform, SID_A, IOVA); // the same bug again: counted, not reported twice
      expect(m.reports).toHaveLength(1);
      expect(m.platform.device.checker!.duplicates).toBe(1);
      const missing = stage === "first"
        ? { action: "pasid-iotlb-invalidation", granularity: "page", did: d.did, pasid: 0, address: BigInt(IOVA), am: 0 }
        : { action: "iotlb-invalidation", granularity: "page", did: d.did, address: BigInt(IOVA), am: 0 };
      expect(m.reports[0]).toMatchObject({
        kind: "stale-cache",
        cached: { structure: "iotlb-entry", present: true, output: BigInt(PHYS), read: true, write: true },
        current: { structure: "paging-entries", present: false, read: false, write: false },
        missing,
      });
      expect(m.reports[0]!.message).toContain(stage === "first" ? "PASID-based IOTLB invalidation (VT-d §6.5.2.4)" : "page-selective IOTLB invalidation (VT-d §6.5.2.3)");
    });
  }

  it("stale first-stage IOTLB entry: permissions lowered without the invalidation", () => {
    const m = checkedMachine(true, { stage: "first" }, ["permission-change-invalidation"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, PAGE, "rw");
    expect(deviceWrite(m.platform, SID_A, IOVA, new Uint8Array(4)).ok).toBe(true);
    m.driver.protect(d, IOVA, PAGE, "r");
    deviceWrite(m.platform, SID_A, IOVA, new Uint8Array(4));
    expect(m.reports.map((r) => [r.kind, r.cached, r.current])).toEqual([["stale-cache",
      expect.objectContaining({ structure: "iotlb-entry", read: true, write: true }),
      expect.objectContaining({ structure: "paging-entries", read: true, write: false })]]);
  });

  it("CM = 1, second stage: a mapping made present without its invalidation, after the unit cached the fault", () => {
    const m = checkedMachine(true, { stage: "second" }, ["cm-map-invalidation"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    tag(m.platform, PHYS, 0x77);
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false); // not mapped yet: the fault may be cached under CM
    m.driver.map(d, IOVA, PHYS, PAGE, "r");
    const r = deviceRead(m.platform, SID_A, IOVA);
    expect(r).toEqual({ ok: false, reason: FaultReason.SmReadNotPermitted }); // the unit still answers with its cached fault
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation",
      cached: { structure: "iotlb-entry", present: false, fault: FaultReason.SmReadNotPermitted },
      current: { structure: "paging-entries", present: true, output: BigInt(PHYS), read: true, write: false },
      missing: { action: "iotlb-invalidation", granularity: "page", did: d.did, address: BigInt(IOVA), am: 0 },
    });
  });

  it("CM = 1: a PASID-table entry (and context entry) made present without the PASID-cache invalidation, after the unit cached the fault", () => {
    const m = checkedMachine(true, {}, ["cm-pasid-invalidation", "cm-context-invalidation"]);
    const d = m.driver.createDomain();
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false); // not attached: the walk faults, kept under CM
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, PAGE, "r");
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation",
      cached: { structure: "pasid-entry", present: false, fault: FaultReason.SmRootEntryNotPresent }, // the first attach makes the root entry present too
      current: { structure: "pasid-entry", present: true, did: d.did, pgtt: 1 },
      missing: { action: "pasid-cache-invalidation", granularity: "pasid", did: d.did, pasid: 0 },
    });
  });

  it("CM = 1, first stage: a mapping made present without any invalidation is no bug (first stage follows the CM = 0 rules)", () => {
    const m = checkedMachine(true, { stage: "first" });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const mark = m.issued.length;
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false);
    m.driver.map(d, IOVA, PHYS, PAGE, "r");
    expect(m.issued.slice(mark)).toEqual([]);
    expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(true);
    expect(m.reports).toEqual([]);
  });
});

describe("the correct driver gives no report", () => {
  it.each(SCALABLE_DRIVER_CASES)("$stage stage, CM = $cm, $mode: faults before maps, maps, unmaps, a superpage split, protect, detach and re-attach", async ({ stage, cm, mode }) => {
    const m = checkedMachine(cm, { stage, mode });
    const d = m.driver.createDomain();
    for (let round = 0; round < 2; round++) {
      m.driver.attach(SID_A, d);
      expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false);
      m.driver.map(d, IOVA, PHYS, 4 * PAGE, "rw");
      m.driver.map(d, 0x4000_0000, 0x20_0000, 2 ** 21, "r");
      for (let i = 0; i < 4; i++) expect(deviceWrite(m.platform, SID_A, IOVA + i * PAGE, new Uint8Array(4)).ok).toBe(true);
      expect(deviceRead(m.platform, SID_A, 0x4000_3000).ok).toBe(true);
      m.driver.unmap(d, IOVA + PAGE, PAGE);
      m.driver.unmap(d, 0x4000_3000, PAGE);
      m.driver.protect(d, IOVA, PAGE, "r");
      if (mode === "lazy") m.driver.flush();
      await m.platform.settle(Promise.resolve());
      expect(deviceRead(m.platform, SID_A, IOVA + PAGE).ok).toBe(false);
      expect(deviceRead(m.platform, SID_A, 0x4000_3000).ok).toBe(false);
      expect(deviceRead(m.platform, SID_A, 0x4000_4000).ok).toBe(true);
      expect(deviceWrite(m.platform, SID_A, IOVA, new Uint8Array(4)).ok).toBe(false);
      m.driver.unmap(d, IOVA, PAGE);
      m.driver.unmap(d, IOVA + 2 * PAGE, 2 * PAGE);
      m.driver.unmap(d, 0x4000_0000, 0x3000);
      m.driver.unmap(d, 0x4000_4000, 2 ** 21 - 0x4000);
      m.driver.flush();
      m.driver.detach(SID_A);
      expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false);
    }
    expect(m.platform.device.checker!.inspected).toBeGreaterThan(20);
    expect(m.reports).toEqual([]);
  });
});

describe("warnings count scalable mode's caches", () => {
  for (const stage of ["first", "second"] as const) {
    it(`${stage} stage: an unmap's invalidation that drops the scalable IOTLB entry is not 'without effect'`, () => {
      const m = checkedMachine(false, { stage });
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      m.driver.map(d, IOVA, PHYS, PAGE, "r");
      expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(true);
      const warnings = () => m.platform.device.checker!.diagnostics.warnings.get("invalidation-without-effect")?.count ?? 0;
      const before = warnings();
      m.driver.unmap(d, IOVA, PAGE);
      expect(warnings()).toBe(before);
      expect(deviceRead(m.platform, SID_A, IOVA).ok).toBe(false);
      // A page-selective IOTLB invalidation now drops nothing: counted (the diagnostics read traced invalidations; PASID-based ones are not traced).
      m.driver.runInvalidations([{ kind: "iotlb-page", did: d.did, address: IOVA, am: 0, ih: false }]);
      expect(warnings()).toBe(before + 1);
      expect(m.reports).toEqual([]);
    });
  }
});
