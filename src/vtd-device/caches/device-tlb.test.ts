import { describe, expect, it } from "vitest";
import { DeviceTlbRange, DeviceTlbs } from "./device-tlb.ts";

const PAGE = 4096;

describe("DeviceTlbs: bounded, evicting like hardware", () => {
  it("fills, looks up and invalidates by endpoint and range", () => {
    const t = new DeviceTlbs(64, 16);
    t.fill(0x20, 0x5000, 0x9000, 3);
    t.fill(0x28, 0x5000, 0xa000, 1);
    expect(t.lookup(0x20, 0x5123)).toEqual({ pageOutput: 0x9000, permission: 3 });
    expect(t.lookup(0x28, 0x5fff)).toEqual({ pageOutput: 0xa000, permission: 1 });
    expect(t.lookup(0x20, 0x6000)).toBeUndefined();
    t.fill(0x20, 0x5000, 0xb000, 1); // refill: updated in place
    expect(t.entries(0x20)).toBe(1);
    expect(t.lookup(0x20, 0x5000)?.pageOutput).toBe(0xb000);
    expect(t.invalidate(0x20, 0x6000, 0x8000)).toBe(0);
    expect(t.invalidate(0x20, 0x4000, 0x6000)).toBe(1);
    expect(t.lookup(0x20, 0x5000)).toBeUndefined();
    expect(t.lookup(0x28, 0x5000)).toBeDefined();
    expect(t.size).toBe(1);
  });

  it("a million fills stay within the capacity and the per-endpoint limit", () => {
    const t = new DeviceTlbs(4096, 256);
    for (let i = 0; i < 1 << 20; i++) t.fill(i & 7, i * PAGE, i * PAGE, 3);
    expect(t.size).toBeLessThanOrEqual(4096);
    for (let sid = 0; sid < 8; sid++) expect(t.entries(sid)).toBeLessThanOrEqual(256);
    expect(t.entries(0)).toBe(256);
  });

  it("an endpoint at its limit drops its oldest entry", () => {
    const t = new DeviceTlbs(1024, 4);
    for (let i = 0; i < 5; i++) t.fill(1, i * PAGE, 0x10_0000 + i * PAGE, 3);
    expect(t.entries(1)).toBe(4);
    expect(t.lookup(1, 0)).toBeUndefined();
    for (let i = 1; i < 5; i++) expect(t.lookup(1, i * PAGE)?.pageOutput).toBe(0x10_0000 + i * PAGE);
  });

  it("a full set evicts one way; the endpoints' counts stay right", () => {
    const t = new DeviceTlbs(4, 4); // one set of four ways
    for (let sid = 0; sid < 6; sid++) t.fill(sid, 0, sid * PAGE, 3);
    expect(t.size).toBe(4);
    let held = 0;
    for (let sid = 0; sid < 6; sid++) held += t.entries(sid);
    expect(held).toBe(4);
    for (let sid = 0; sid < 6; sid++) t.invalidate(sid, 0, 2 ** 64);
    expect(t.size).toBe(0);
  });

  it("an invalidation visits at most min(4 × pages, entries held) slots", () => {
    const t = new DeviceTlbs(4096, 256);
    for (let i = 0; i < 256; i++) t.fill(9, 0x100_0000 + i * PAGE, 0, 3);
    let work = t.invalidationWork;
    t.invalidate(9, 0, 2 * PAGE); // two pages: looked up
    expect(t.invalidationWork - work).toBe(8);
    work = t.invalidationWork;
    t.invalidate(9, 0, 2 ** 40); // a wide range that misses: the endpoint's own list
    expect(t.invalidationWork - work).toBe(256);
    work = t.invalidationWork;
    t.invalidate(10, 0, 2 ** 64); // an endpoint with nothing cached: nothing to visit
    expect(t.invalidationWork - work).toBe(0);
  });

  it("a requester id that is not 16 bits is ignored, never thrown on", () => {
    const t = new DeviceTlbs();
    for (const sid of [-1, 0x1_0000, 1.5, NaN]) {
      t.fill(sid, 0, 0, 3);
      expect(t.lookup(sid, 0)).toBeUndefined();
      expect(t.invalidate(sid, 0, 2 ** 64)).toBe(0);
      expect(t.entries(sid)).toBe(0);
    }
    expect(t.size).toBe(0);
  });

  it("agrees with a plain model under random fills and invalidations: never a stale or foreign entry", () => {
    let seed = 12345;
    const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const t = new DeviceTlbs(64, 8);
    const model = new Map<string, number>(); // last translation filled and not invalidated since
    for (let step = 0; step < 200_000; step++) {
      const sid = random(6), page = random(40);
      if (random(4) === 0) {
        const first = random(40), count = 1 + random(8);
        t.invalidate(sid, first * PAGE, (first + count) * PAGE);
        for (let p = first; p < first + count; p++) model.delete(`${sid}:${p}`);
      } else if (random(2) === 0) {
        const output = random(1 << 20) * PAGE;
        t.fill(sid, page * PAGE + random(PAGE), output, 1 + random(3));
        model.set(`${sid}:${page}`, output);
      } else {
        const hit = t.lookup(sid, page * PAGE);
        if (hit) expect(hit.pageOutput).toBe(model.get(`${sid}:${page}`));
      }
      expect(t.size).toBeLessThanOrEqual(64);
    }
  });

  it("clear empties everything", () => {
    const t = new DeviceTlbs(16, 4);
    t.fill(1, 0, 0, 3);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.lookup(1, 0)).toBeUndefined();
    t.fill(1, 0, 0, 3);
    expect(t.entries(1)).toBe(1);
  });
});

describe("DeviceTlbRange: the ATS size encoding, exact on the dwords", () => {
  const range = (address: bigint, s: boolean): [number, number] => {
    const r = new DeviceTlbRange();
    r.decode(Number(address & 0xffff_ffffn), Number(address >> 32n), s);
    return [r.rangeStart, r.rangeEnd];
  };
  it.each([
    [0x5123n, false, 0x5000, 0x6000],
    [0x4000n, true, 0x4000, 0x6000], // bit 12 clear: 8 KiB
    [0x5000n, true, 0x4000, 0x8000], // bit 12 set, 13 clear: 16 KiB
    [0x4000_0000n | 0xff000n, true, 0x4000_0000, 0x4020_0000],
    [0xffff_f000n, true, 0, 2 ** 33],
    [0x1_7fff_f000n, true, 2 ** 32, 2 ** 33], // bits 30:12 set, 31 clear: 2^32 bytes
    [0x7fff_ffff_ffff_f000n, true, 0, 2 ** 64],
    [0xffff_ffff_ffff_f000n, true, 0, 2 ** 64],
    [0x0000_7fff_ffff_f000n, true, 0, 2 ** 48],
    [0x1234_5678_9000n, false, 0x1234_5678_9000, 0x1234_5678_a000],
  ])("%s S=%s → [%s, %s)", (address, s, start, end) => {
    expect(range(address, s)).toEqual([start, end]);
  });
});
