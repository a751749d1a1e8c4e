/**
 * Strict and lazy unmapping, the flush queue (250 entries or 10 ms), and batching under CM = 1
 * where Linux forbids the flush queue: one page-selective invalidation per unmapped range, all in
 * one queue submission, so a vIOMMU shadowing the tables sees exactly what was unmapped.
 */
import { describe, expect, it } from "vitest";
import type { TraceEvent } from "../vtd-device/trace.ts";
import { deviceRead, readTag, SID_A, tag, testMachine } from "../../test/support/driver-scenarios.ts";

const PHYS = 0x40_0000;

function lazyMachine(vtd: Parameters<typeof testMachine>[0] = {}, options: Parameters<typeof testMachine>[1] = {}) {
  const m = testMachine(vtd, { mode: "lazy", ...options });
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  return { ...m, d };
}

describe("strict versus lazy", () => {
  it("strict: the device faults on the buffer as soon as unmap returns", () => {
    const m = testMachine({});
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    tag(m.platform, PHYS, 0xabcd);
    const iova = m.driver.mapBuffer(d, PHYS, 4096, "r");
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
    m.driver.unmapBuffer(d, iova, 4096);
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(false);
  });

  it("lazy: the device can still reach the buffer until the flush (10 ms later), then faults", () => {
    const m = lazyMachine();
    tag(m.platform, PHYS, 0xabcd);
    const iova = m.driver.mapBuffer(m.d, PHYS, 4096, "r");
    const r = deviceRead(m.platform, SID_A, iova);
    expect(r.ok && readTag(r.bytes)).toBe(0xabcd);
    m.driver.unmapBuffer(m.d, iova, 4096);
    const stale = deviceRead(m.platform, SID_A, iova);
    expect(stale.ok && readTag(stale.bytes)).toBe(0xabcd); // the window lazy mode accepts
    expect(m.driver.pendingUnmaps).toBe(1);
    m.platform.clock.advance(9.9);
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
    m.platform.clock.advance(0.1); // the 10 ms timer
    expect(m.driver.pendingUnmaps).toBe(0);
    return m.platform.settle(Promise.resolve()).then(() => {
      expect(deviceRead(m.platform, SID_A, iova).ok).toBe(false);
    });
  });

  it("lazy: the high-water mark (250) flushes at once with one domain-selective invalidation (CM = 0)", () => {
    const m = lazyMachine();
    const iovas = Array.from({ length: 250 }, (_, i) => m.driver.mapBuffer(m.d, PHYS + i * 4096, 4096, "r"));
    const before = { ...m.platform.device.stats.iotlbInvalidations };
    for (let i = 0; i < 249; i++) m.driver.unmapBuffer(m.d, iovas[i]!, 4096);
    expect(m.driver.pendingUnmaps).toBe(249);
    expect(m.platform.device.stats.iotlbInvalidations).toEqual(before);
    m.driver.unmapBuffer(m.d, iovas[249]!, 4096);
    expect(m.driver.pendingUnmaps).toBe(0);
    expect(m.platform.device.stats.iotlbInvalidations).toEqual({ ...before, domain: before.domain + 1 });
  });

  it("lazy: mapping an explicit IOVA whose unmap is still queued flushes first", () => {
    const m = lazyMachine();
    tag(m.platform, PHYS, 1);
    tag(m.platform, PHYS + 4096, 2);
    m.driver.map(m.d, 0x1000_0000, PHYS, 4096, "r");
    deviceRead(m.platform, SID_A, 0x1000_0000);
    m.driver.unmap(m.d, 0x1000_0000, 4096);
    m.driver.map(m.d, 0x1000_0000, PHYS + 4096, 4096, "r");
    const r = deviceRead(m.platform, SID_A, 0x1000_0000);
    expect(r.ok && readTag(r.bytes)).toBe(2);
  });
});

describe("CM = 1: batched page-selective invalidations (Linux forces strict mode here)", () => {
  it("lazy under CM = 1: one page-selective invalidation per unmapped range, all in one submission", () => {
    const m = lazyMachine({ cachingMode: true }, { flushQueueHighWater: 1000 });
    const ranges = [[0x1000_0000, 4096], [0x1000_4000, 3 * 4096], [0x2000_0000, 2 ** 21], [0x3000_0000, 16 * 4096], [0x3010_0000, 4096]] as const;
    for (const [iova, length] of ranges) m.driver.map(m.d, iova, PHYS, length, "r");
    for (const [iova] of ranges) deviceRead(m.platform, SID_A, iova);
    const events: TraceEvent[] = [];
    m.platform.device.trace.subscribe((e) => {
      if (e.type === "vtd_inv" || (e.type === "vtd_reg_write" && e.offset === 0x88)) events.push(e);
    });
    for (const [iova, length] of ranges) m.driver.unmap(m.d, iova, length);
    expect(events).toEqual([]); // nothing until the flush
    const submissions = m.driver.counters.queueSubmissions;
    m.driver.flush();
    const psi = events.filter((e) => e.type === "vtd_inv" && e.granularity === "page");
    expect(psi).toHaveLength(ranges.length);
    expect(events.filter((e) => e.type === "vtd_inv" && e.granularity !== "page")).toEqual([]);
    expect(events.filter((e) => e.type === "vtd_reg_write")).toHaveLength(1); // one tail write
    expect(m.driver.counters.queueSubmissions - submissions).toBe(1);
    // Exact: each invalidation covers its range (2^AM pages at the range's aligned base).
    expect(psi.map((e) => e.type === "vtd_inv" && [Number(e.address), e.am])).toEqual([
      [0x1000_0000, 0], [0x1000_4000, 2], [0x2000_0000, 9], [0x3000_0000, 4], [0x3010_0000, 0],
    ]);
    for (const [iova] of ranges) expect(deviceRead(m.platform, SID_A, iova).ok).toBe(false);
  });

  it("the count of page-selective invalidations the unit saw equals the number of unmapped ranges (200 ranges)", () => {
    const m = lazyMachine({ cachingMode: true });
    const iovas = Array.from({ length: 200 }, (_, i) => m.driver.mapBuffer(m.d, PHYS, 4096 * (1 + (i % 3)), "r"));
    const before = m.platform.device.stats.iotlbInvalidations.page;
    iovas.forEach((iova, i) => m.driver.unmapBuffer(m.d, iova, 4096 * (1 + (i % 3))));
    m.driver.flush();
    expect(m.platform.device.stats.iotlbInvalidations.page - before).toBe(200);
    expect(m.platform.device.stats.iotlbInvalidations.domain).toBe(1); // the attach's, none from flushing
  });
});

describe("range operations and deferred-flush scopes", () => {
  it("a 64-page range is one invalidation, not 64 (CM = 1 map and strict unmap)", () => {
    const m = testMachine({ cachingMode: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const before = m.platform.device.stats.iotlbInvalidations.page;
    m.driver.map(d, 0x1000_0000, PHYS, 64 * 4096, "rw", { largestPage: "4K" });
    m.driver.unmap(d, 0x1000_0000, 64 * 4096);
    expect(m.platform.device.stats.iotlbInvalidations.page - before).toBe(2);
  });

  it("page-by-page maps in a deferred-flush scope: touching ranges merge into one invalidation, one wait", () => {
    const m = testMachine({ cachingMode: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const before = { page: m.platform.device.stats.iotlbInvalidations.page, waits: m.platform.device.stats.invalidationWaits };
    m.driver.deferFlush(() => {
      for (let i = 0; i < 512; i++) m.driver.map(d, 0x1000_0000 + i * 4096, PHYS, 4096, "r");
    });
    expect(m.platform.device.stats.iotlbInvalidations.page - before.page).toBe(1);
    expect(m.platform.device.stats.invalidationWaits - before.waits).toBe(1);
    expect(deviceRead(m.platform, SID_A, 0x1000_0000 + 511 * 4096).ok).toBe(true);
  });

  it("the same without a scope: one invalidation and one wait per page (the Xen hvmloader case)", () => {
    const m = testMachine({ cachingMode: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const before = { page: m.platform.device.stats.iotlbInvalidations.page, waits: m.platform.device.stats.invalidationWaits };
    for (let i = 0; i < 512; i++) m.driver.map(d, 0x1000_0000 + i * 4096, PHYS, 4096, "r");
    expect(m.platform.device.stats.iotlbInvalidations.page - before.page).toBe(512);
    expect(m.platform.device.stats.invalidationWaits - before.waits).toBe(512);
  });

  it("relocating pages (unmap + map elsewhere) in a scope: unmapped IOVAs are reused only after the scope's flush", () => {
    const m = testMachine({});
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    tag(m.platform, PHYS, 1);
    tag(m.platform, PHYS + 4096, 2);
    const a = m.driver.mapBuffer(d, PHYS, 4096, "r");
    deviceRead(m.platform, SID_A, a);
    let b = -1;
    m.driver.deferFlush(() => {
      m.driver.unmapBuffer(d, a, 4096);
      b = m.driver.mapBuffer(d, PHYS + 4096, 4096, "r");
      expect(b).not.toBe(a);
      expect(deviceRead(m.platform, SID_A, a).ok).toBe(true); // not invalidated yet
    });
    expect(deviceRead(m.platform, SID_A, a).ok).toBe(false);
    const r = deviceRead(m.platform, SID_A, b);
    expect(r.ok && readTag(r.bytes)).toBe(2);
    expect(m.driver.mapBuffer(d, PHYS, 4096, "r")).toBe(a); // freed now
  });

  it("a batch larger than the queue (600 invalidations, 256 slots) is handed over in parts with one wait", () => {
    const m = testMachine({ cachingMode: true });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    for (let i = 0; i < 600; i++) m.driver.map(d, 0x1000_0000 + i * 8192, PHYS, 4096, "r");
    const before = { page: m.platform.device.stats.iotlbInvalidations.page, waits: m.platform.device.stats.invalidationWaits, submissions: m.driver.counters.queueSubmissions };
    m.driver.deferFlush(() => {
      for (let i = 0; i < 600; i++) m.driver.unmap(d, 0x1000_0000 + i * 8192, 4096); // no two touch: 600 ranges
    });
    expect(m.platform.device.stats.iotlbInvalidations.page - before.page).toBe(600);
    expect(m.platform.device.stats.invalidationWaits - before.waits).toBe(1);
    expect(m.driver.counters.queueSubmissions - before.submissions).toBeGreaterThanOrEqual(3);
    expect(deviceRead(m.platform, SID_A, 0x1000_0000 + 599 * 8192).ok).toBe(false);
  });

  it("a deferred-flush scope that throws still invalidates what it changed", () => {
    const m = testMachine({});
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, 0x1000_0000, PHYS, 4096, "r");
    deviceRead(m.platform, SID_A, 0x1000_0000);
    expect(() => m.driver.deferFlush(() => {
      m.driver.unmap(d, 0x1000_0000, 4096);
      throw new Error("caller's bug");
    })).toThrow("caller's bug");
    expect(deviceRead(m.platform, SID_A, 0x1000_0000).ok).toBe(false);
  });

  it("superpages are used where alignment allows, and largestPage limits them", () => {
    const m = testMachine({});
    const d = m.driver.createDomain();
    m.driver.map(d, 2 ** 30, 2 ** 30, 2 ** 30 + 2 ** 21 + 4096, "r");
    expect(d.lookup(2 ** 30)!.level).toBe(3);
    expect(d.lookup(2 ** 31)!.level).toBe(2);
    expect(d.lookup(2 ** 31 + 2 ** 21)!.level).toBe(1);
    m.driver.map(d, 2 ** 33, 2 ** 30, 2 ** 30, "r", { largestPage: "2M" });
    expect(d.lookup(2 ** 33 + 5 * 2 ** 21)!.level).toBe(2);
    m.driver.map(d, 2 ** 34 + 4096, 2 ** 30, 2 ** 22, "r");
    expect(d.lookup(2 ** 34 + 4096)!.level).toBe(1); // IOVA not 2M aligned: 4K pages
  });

  it("without CAP.SLLPS only 4 KiB pages are used", () => {
    const m = testMachine({}, {}, { readFilter: (o, s, v) => (o === 8 && s === 8 ? v & ~(3n << 34n) : v) });
    const d = m.driver.createDomain();
    m.driver.map(d, 2 ** 30, 2 ** 30, 2 ** 21, "r");
    expect(d.lookup(2 ** 30)!.level).toBe(1);
    expect(d.lookup(2 ** 30 + 2 ** 21 - 4096)!.phys).toBe(2 ** 30 + 2 ** 21 - 4096);
  });

  it("PSI falls back to domain-selective when CAP.PSI = 0 or the range needs a mask above CAP.MAMV", () => {
    const noPsi = testMachine({ cachingMode: true }, {}, { readFilter: (o, s, v) => (o === 8 && s === 8 ? v & ~(1n << 39n) : v) });
    const d = noPsi.driver.createDomain();
    noPsi.driver.attach(SID_A, d);
    noPsi.driver.map(d, 0x1000_0000, PHYS, 4096, "r");
    expect(noPsi.platform.device.stats.iotlbInvalidations.page).toBe(0);
    expect(noPsi.driver.counters.pageSelectiveFallbacks).toBe(1);
    // MAMV 9 (2 MiB): a 4 MiB range needs AM 10.
    const mamv9 = testMachine({ cachingMode: true }, {}, { readFilter: (o, s, v) => (o === 8 && s === 8 ? (v & ~(0x3fn << 48n)) | (9n << 48n) : v) });
    const d2 = mamv9.driver.createDomain();
    mamv9.driver.attach(SID_A, d2);
    mamv9.driver.map(d2, 0x1000_0000, PHYS, 2 ** 21, "r");
    mamv9.driver.map(d2, 0x2000_0000, PHYS, 2 ** 22, "r");
    expect(mamv9.platform.device.stats.iotlbInvalidations.page).toBe(1);
    expect(mamv9.driver.counters.pageSelectiveFallbacks).toBe(1);
  });
});
