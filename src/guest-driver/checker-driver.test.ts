/**
 * The unit's strict checker against the guest driver: each invalidation or flush rule suppressed
 * (test-only switch) is reported with the right fields; the correct driver produces no report
 * over a workload (map, unmap, reuse, superpage split under live DMA, device-TLBs, detach) under
 * CM = 0 / 1, coherent and not, strict and lazy.
 */
import { describe, expect, it } from "vitest";
import type { DriverBugReport } from "../vtd-device/checker/checker-report.ts";
import type { VtdOptions } from "../vtd-device/options.ts";
import type { DriverRule, UnmapMode } from "./options.ts";
import { deviceRead, readTag, SID_A, SID_B, tag, testMachine, type TestMachine } from "../../test/support/driver-scenarios.ts";

const IOVA = 0x1000_0000;
const PHYS_1 = 0x40_0000, PHYS_2 = 0x50_0000;

interface Checked extends TestMachine {
  reports: DriverBugReport[];
}

function machine(vtd: Omit<VtdOptions, "memory" | "onInterrupt">, suppress: DriverRule[] = [], mode: UnmapMode = "strict"): Checked {
  const reports: DriverBugReport[] = [];
  const m = testMachine({ ...vtd, checker: { onReport: (r) => reports.push(r) } }, { mode, testOnly: { suppress } });
  tag(m.platform, PHYS_1, 0x1111);
  tag(m.platform, PHYS_2, 0x2222);
  return { ...m, reports };
}

/** What the device reads at `iova`: the tag, or "fault". */
function seen(m: TestMachine, iova = IOVA, sid = SID_A): number | "fault" {
  const r = deviceRead(m.platform, sid, iova);
  return r.ok ? readTag(r.bytes) : "fault";
}

describe("each broken rule is reported", () => {
  it("cm-context-invalidation: the cached not-present context entry (DID 0) is used after attach", () => {
    const m = machine({ cachingMode: true }, ["cm-context-invalidation"]);
    m.driver.attach(SID_B, m.driver.createDomain()); // bus 0's context table exists
    expect(seen(m)).toBe("fault"); // cached as not present, DID 0
    const d = m.driver.createDomain();
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    m.driver.attach(SID_A, d);
    expect(seen(m)).toBe("fault");
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation", sid: SID_A, device: "00:04.0", iova: BigInt(IOVA), write: false,
      cached: { structure: "context-entry", present: false, did: 0 },
      current: { structure: "context-entry", present: true, did: d.did, tableRoot: BigInt(d.tables.root) },
      missing: { action: "context-cache-invalidation", granularity: "device", sid: SID_A, did: 0 },
    });
    expect(m.reports[0]!.missing.text).toBe(`device-selective context-cache invalidation SID 00:04.0 DID 0, then a domain-selective IOTLB invalidation DID ${d.did}`);
  });

  it("cm-map-invalidation: the negative IOTLB entry is used after the map", () => {
    const m = machine({ cachingMode: true }, ["cm-map-invalidation"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    expect(seen(m)).toBe("fault");
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe("fault");
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation", sid: SID_A, iova: BigInt(IOVA),
      cached: { structure: "iotlb-entry", present: false },
      current: { structure: "paging-entries", present: true, output: BigInt(PHYS_1), read: true, write: false, level: 1 },
      missing: { action: "iotlb-invalidation", granularity: "page", did: d.did, address: BigInt(IOVA), am: 0 },
    });
    expect(m.reports[0]!.missing.text).toBe(`page-selective IOTLB invalidation DID ${d.did} addr 0x10000000 AM 0`);
  });

  it("unmap-invalidation: the unmapped page, then its reuse, are used from the IOTLB", () => {
    const m = machine({ cachingMode: false }, ["unmap-invalidation"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe(0x1111);
    m.driver.unmap(d, IOVA, 4096);
    expect(seen(m)).toBe(0x1111);
    m.driver.map(d, IOVA, PHYS_2, 4096, "r");
    expect(seen(m)).toBe(0x1111);
    expect(m.reports.map((r) => [r.kind, (r.cached as { output: bigint }).output, (r.current as { present: boolean }).present, (r.current as { output: bigint }).output]))
      .toEqual([["stale-cache", BigInt(PHYS_1), false, 0n], ["stale-cache", BigInt(PHYS_1), true, BigInt(PHYS_2)]]);
    expect(m.reports[0]!.missing).toMatchObject({ action: "iotlb-invalidation", did: d.did, address: BigInt(IOVA), am: 0 });
  });

  it("unmap-invalidation on detach: the cached context entry is used after its device was detached", () => {
    const m = machine({ cachingMode: false }, ["unmap-invalidation"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe(0x1111);
    m.driver.detach(SID_A);
    expect(seen(m)).toBe(0x1111);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache",
      cached: { structure: "context-entry", present: true, did: d.did },
      current: { structure: "context-entry", present: false },
      missing: { action: "context-cache-invalidation", sid: SID_A, did: d.did },
    });
  });

  it("deferred-iova-reuse (lazy): the IOVA is reused before the flush and the old buffer is reached", () => {
    const m = machine({ cachingMode: false }, ["deferred-iova-reuse"], "lazy");
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const first = m.driver.mapBuffer(d, PHYS_1, 4096, "r");
    expect(seen(m, first)).toBe(0x1111);
    m.driver.unmapBuffer(d, first, 4096);
    const second = m.driver.mapBuffer(d, PHYS_2, 4096, "r");
    expect(second).toBe(first);
    expect(seen(m, second)).toBe(0x1111);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache", iova: BigInt(second),
      cached: { output: BigInt(PHYS_1) }, current: { output: BigInt(PHYS_2) },
      missing: { action: "iotlb-invalidation", did: d.did, address: BigInt(second), am: 0 },
    });
  });

  it("cpu-cache-flush (ECAP.C = 0): the first table entry the unit reads without the CPU's store", () => {
    const m = machine({ coherent: false }, ["cpu-cache-flush"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    expect(seen(m)).toBe("fault");
    expect(m.reports).toHaveLength(1);
    const r = m.reports[0]!;
    const rootTable = Number(m.platform.device.readRegister(0x20, 8)); // RTADDR
    expect(r).toMatchObject({
      kind: "unflushed-table-write", sid: SID_A, iova: BigInt(IOVA),
      cached: { structure: "table-entry", table: "root", address: BigInt(rootTable), value: 0n },
      current: { structure: "table-entry", table: "root", address: BigInt(rootTable) },
      missing: { action: "cache-line-flush", line: BigInt(rootTable) },
    });
    expect((r.current as { value: bigint }).value & 1n).toBe(1n); // present in the CPU's cache
    expect(m.platform.cache.dirtyLines()).toContain(rootTable);
  });

  it("cpu-cache-flush, every line but the PTE's written back by hand: the unflushed PTE is named", () => {
    const m = machine({ coherent: false }, ["cpu-cache-flush"]);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS_1, 4096, "r");
    const pte = leafEntry(m, d.tables.root, d.aw + 2, IOVA);
    for (const line of m.platform.cache.dirtyLines()) if (line !== pte - (pte % 64)) m.platform.cache.flush(line, 64);
    expect(seen(m)).toBe("fault");
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "unflushed-table-write",
      cached: { table: "paging", level: 1, address: BigInt(pte), value: 0n },
      current: { table: "paging", level: 1, address: BigInt(pte), value: BigInt(PHYS_1) | 1n },
      missing: { action: "cache-line-flush", line: BigInt(pte - (pte % 64)) },
    });
    m.platform.cache.flush(pte, 8);
    expect(seen(m)).toBe(0x1111);
    expect(m.reports).toHaveLength(1);
  });

  for (const cm of [false, true]) {
    it(`atomic-superpage-split, CM = ${+cm}, live DMA on a neighbour page: the cleared leaf is used from the IOTLB${cm ? ", then the hole's negative entry stays" : ""}`, () => {
      const m = machine({ cachingMode: cm, coherent: true }, ["atomic-superpage-split"]);
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      const base = 0x4000_0000, neighbour = base + 4096;
      m.driver.map(d, base, 0x200_0000, 2 ** 21, "r");
      expect(seen(m, neighbour)).not.toBe("fault");
      m.platform.afterWrite = () => void seen(m, neighbour); // the device keeps reading while the driver stores
      m.driver.unmap(d, base + 5 * 4096, 4096);
      m.platform.afterWrite = undefined;
      // First: the superpage entry is cleared but still cached (the naive split's window).
      expect(m.reports[0]).toMatchObject({
        kind: "stale-cache", iova: BigInt(neighbour),
        cached: { structure: "iotlb-entry", level: 2, output: 0x200_1000n }, current: { present: false, level: 2 },
        missing: { action: "iotlb-invalidation", did: d.did, address: BigInt(base), am: 9 },
      });
      if (cm) {
        // Then: the read in the hole cached "not present"; the rebuilt page is never invalidated.
        expect(seen(m, neighbour)).toBe("fault");
        expect(m.reports.map((r) => r.kind)).toEqual(["stale-cache", "missing-cm-invalidation"]);
        expect(m.reports[1]).toMatchObject({ iova: BigInt(neighbour), cached: { present: false }, current: { present: true, output: 0x200_1000n, level: 1 } });
      } else {
        expect(seen(m, neighbour)).not.toBe("fault"); // CM = 0: the hole was only transient
        expect(m.reports.map((r) => r.kind)).toEqual(["stale-cache"]);
      }
    });
  }
});

/** Address of the last-level entry for `iova`, found through the CPU's view of the tables. */
function leafEntry(m: TestMachine, root: number, levels: number, iova: number): number {
  let table = root;
  for (let level = levels; level > 1; level--) {
    const index = Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
    table = Number(m.platform.memory.read64(table + index * 8) & 0x000f_ffff_ffff_f000n);
  }
  return table + (Math.floor(iova / 4096) % 512) * 8;
}

// ---- the correct driver ----

const PHYS = 0x40_0000, SUPER = 0x200_0000, X = 0x5000_0000, SPLIT = 0x4000_0000;

/** A workload in which devices only reach what is mapped (or fault where nothing ever was). Returns what went wrong. */
function workload(m: Checked, mode: UnmapMode): string[] {
  const { driver, platform } = m;
  const wrong: string[] = [];
  for (let i = 0; i < 32; i++) tag(platform, PHYS + i * 4096, 0x100 + i);
  for (let i = 0; i < 512; i++) tag(platform, SUPER + i * 4096, 0x9000 + i);
  const expectRead = (what: string, sid: number, iova: number, want: number | "fault") => {
    const got = seen(m, iova, sid);
    if (got !== want) wrong.push(`${what}: got ${got}, expected ${want}`);
  };
  const d1 = driver.createDomain(), d2 = driver.createDomain();
  driver.attach(SID_B, d2, { deviceTlb: true });
  expectRead("before attach", SID_A, X, "fault"); // CM = 1: a negative context entry
  driver.attach(SID_A, d1);
  expectRead("attached, unmapped", SID_A, X, "fault"); // CM = 1: a negative IOTLB entry
  const buffers = Array.from({ length: 16 }, (_, i) => driver.mapBuffer(d1, PHYS + i * 4096, 4096, "rw"));
  buffers.forEach((iova, i) => expectRead(`buffer ${i}`, SID_A, iova, 0x100 + i));
  driver.map(d1, X, PHYS, 4096, "r");
  expectRead("X mapped after a fault there", SID_A, X, 0x100);
  driver.map(d2, SPLIT, SUPER, 2 ** 21, "r");
  driver.map(d2, 0x1000_0000, PHYS + 16 * 4096, 16 * 4096, "r");
  expectRead("superpage", SID_B, SPLIT + 77 * 4096, 0x9000 + 77);
  expectRead("64K range", SID_B, 0x1000_f000, 0x100 + 31);
  for (let i = 0; i < 8; i++) driver.unmapBuffer(d1, buffers[i]!, 4096);
  if (mode === "strict") for (let i = 0; i < 8; i++) expectRead(`unmapped buffer ${i}`, SID_A, buffers[i]!, "fault");
  driver.unmap(d1, X, 4096);
  driver.map(d1, X, PHYS + 4096, 4096, "r"); // the same IOVA, another page
  expectRead("X remapped", SID_A, X, 0x101);
  // Splits, with the device reading neighbour pages after every store the driver makes: through
  // the unit's IOTLB (d1, the 2 MiB leaf cached) and through an endpoint's device-TLB (d2).
  driver.map(d1, SPLIT, SUPER, 2 ** 21, "r");
  expectRead("superpage in d1", SID_A, SPLIT + 3 * 4096, 0x9000 + 3);
  for (const [domain, sid] of [[d1, SID_A], [d2, SID_B]] as const) {
    platform.afterWrite = () => {
      for (const p of [0, 4, 6, 511]) expectRead(`during the split, page ${p}`, sid, SPLIT + p * 4096, 0x9000 + p);
    };
    driver.unmap(domain, SPLIT + 5 * 4096, 4096);
    platform.afterWrite = undefined;
  }
  expectRead("split neighbour", SID_B, SPLIT + 6 * 4096, 0x9000 + 6);
  driver.flush();
  for (let i = 0; i < 8; i++) expectRead(`unmapped buffer ${i} after flush`, SID_A, buffers[i]!, "fault");
  expectRead("split page after flush", SID_B, SPLIT + 5 * 4096, "fault");
  // Freed IOVAs are reused now (after their invalidation).
  const again = Array.from({ length: 8 }, (_, i) => driver.mapBuffer(d1, PHYS + (16 + i) * 4096, 4096, "r"));
  again.forEach((iova, i) => expectRead(`new buffer ${i}`, SID_A, iova, 0x100 + 16 + i));
  driver.detach(SID_B);
  expectRead("detached", SID_B, 0x1000_0000, "fault");
  driver.attach(SID_B, d2);
  expectRead("attached again", SID_B, 0x1000_0000, 0x100 + 16);
  driver.handleFaults();
  return wrong;
}

describe("the correct driver produces no report", () => {
  for (const mode of ["strict", "lazy"] as const)
    for (const cm of [false, true])
      for (const coherent of [true, false]) {
        it(`${mode} CM=${+cm} C=${+coherent}`, () => {
          const m = machine({ cachingMode: cm, coherent, deviceIotlb: true }, [], mode);
          expect(workload(m, mode)).toEqual([]);
          expect(m.reports.map((r) => r.message)).toEqual([]);
          expect(m.platform.device.checker!.inspected).toBeGreaterThan(500);
        });
      }

  it("lazy: a device that keeps using a buffer in the flush queue's window is reported (the window is the device's to respect)", () => {
    const m = machine({ cachingMode: false }, [], "lazy");
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const iova = m.driver.mapBuffer(d, PHYS_1, 4096, "r");
    expect(seen(m, iova)).toBe(0x1111);
    m.driver.unmapBuffer(d, iova, 4096);
    expect(seen(m, iova)).toBe(0x1111);
    expect(m.reports.map((r) => r.kind)).toEqual(["stale-cache"]);
    m.driver.flush();
    expect(seen(m, iova)).toBe("fault");
    expect(m.reports).toHaveLength(1);
  });
});
