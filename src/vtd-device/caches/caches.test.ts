import { describe, expect, it } from "vitest";
import { FaultReason } from "../index.ts";
import { Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";

const SID = 0x20;
const IVA = 0xf0, IOTLB = 0xf8;

function contextInvalidate(m: Machine, cirg: number, did = 0, sid = 0, fm = 0): bigint {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (BigInt(cirg) << 61n) | (BigInt(fm) << 32n) | (BigInt(sid) << 16n) | BigInt(did));
  return m.device.readRegister(Reg.CCMD, 8);
}
function iotlbInvalidate(m: Machine, iirg: number, did = 0, address = 0n, am = 0): bigint {
  if (iirg === 3) m.device.writeRegister(IVA, 8, address | BigInt(am));
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (BigInt(iirg) << 60n) | (BigInt(did) << 32n));
  return m.device.readRegister(IOTLB, 8);
}
const read = (m: Machine, iova: number, sid = SID) => m.device.dmaRead(sid, BigInt(iova), new Uint8Array(4));

describe("IOTLB and context cache", () => {
  it("a present translation is cached: a change without invalidation is not seen until invalidated", () => {
    const m = machine({ awBits: 39 });
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x1000, 0x20_0000, R | W);
    m.ram.direct[0x20_0000] = 1;
    m.ram.direct[0x30_0000] = 2;
    const into = new Uint8Array(1);
    m.device.dmaRead(SID, 0x1000n, into);
    expect(into[0]).toBe(1);
    m.ram.write64(pte, 0x30_0000n | 3n);
    m.device.dmaRead(SID, 0x1000n, into);
    expect(into[0]).toBe(1); // stale, as hardware may be
    expect(iotlbInvalidate(m, 3, 3, 0x1000n) >> 57n & 3n).toBe(3n);
    m.device.dmaRead(SID, 0x1000n, into);
    expect(into[0]).toBe(2);
  });

  it("register-based invalidation reports the granularity it did; AM above MAMV is an error", () => {
    const m = machine({ awBits: 39 });
    expect((contextInvalidate(m, 1) >> 59n) & 3n).toBe(1n);
    expect((contextInvalidate(m, 2, 5) >> 59n) & 3n).toBe(2n);
    expect((contextInvalidate(m, 3, 5, SID, 3) >> 59n) & 3n).toBe(3n);
    expect((contextInvalidate(m, 0) >> 59n) & 3n).toBe(0n);
    expect((iotlbInvalidate(m, 1) >> 57n) & 3n).toBe(1n);
    expect((iotlbInvalidate(m, 2, 7) >> 57n) & 3n).toBe(2n);
    expect((iotlbInvalidate(m, 3, 7, 0x20_0000n, 9) >> 57n) & 3n).toBe(3n);
    expect((iotlbInvalidate(m, 3, 7, 0n, 19) >> 57n) & 3n).toBe(0n);
    expect(m.device.readRegister(IOTLB, 8) >> 63n).toBe(0n);
    expect(m.device.stats.iotlbInvalidations).toEqual({ global: 1, domain: 1, page: 1 });
  });

  it("each granularity drops what it names and keeps the rest", () => {
    const m = machine({ awBits: 39 });
    const a = m.tables.context(SID, { did: 1 });
    const b = m.tables.context(SID + 1, { did: 2 });
    enableTranslation(m);
    for (let i = 0; i < 4; i++) {
      m.tables.map(a, 3, i * 0x1000, 0x20_0000 + i * 0x1000, R);
      m.tables.map(b, 3, i * 0x1000, 0x20_0000 + i * 0x1000, R);
      read(m, i * 0x1000);
      read(m, i * 0x1000, SID + 1);
    }
    expect(m.device.cacheOccupancy).toEqual({ contextEntries: 2, iotlbEntries: 8 });
    iotlbInvalidate(m, 3, 1, 0x2000n, 1); // pages 2 and 3 of domain 1
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(6);
    iotlbInvalidate(m, 2, 2);
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(2);
    contextInvalidate(m, 3, 0, SID + 1, 0);
    expect(m.device.cacheOccupancy.contextEntries).toBe(1);
    contextInvalidate(m, 2, 1);
    expect(m.device.cacheOccupancy.contextEntries).toBe(0);
    iotlbInvalidate(m, 1);
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(0);
  });

  it("a page-selective invalidation of a 4K page inside a cached 2M leaf drops the 2M entry", () => {
    const m = machine({ awBits: 39 });
    const root = m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    m.tables.map(root, 3, 0x20_0000, 0x40_0000, R, 2);
    read(m, 0x20_0000);
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(1);
    iotlbInvalidate(m, 3, 1, 0x2f_f000n, 0);
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(0);
  });

  it("device-selective context invalidation honours the function mask", () => {
    const m = machine({ awBits: 39 });
    for (let fn = 0; fn < 8; fn++) m.tables.context(0x20 | fn, { did: 1 });
    enableTranslation(m);
    for (let fn = 0; fn < 8; fn++) read(m, 0, 0x20 | fn);
    expect(m.device.cacheOccupancy.contextEntries).toBe(8);
    contextInvalidate(m, 3, 0, 0x21, 1); // functions 1 and 5
    expect(m.device.cacheOccupancy.contextEntries).toBe(6);
    contextInvalidate(m, 3, 0, 0x20, 3); // all functions
    expect(m.device.cacheOccupancy.contextEntries).toBe(0);
  });

  it("bounded: filling beyond capacity evicts single entries, never everything", () => {
    const m = machine({ awBits: 39, iotlbEntries: 16 });
    const root = m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    for (let i = 0; i < 64; i++) {
      m.tables.map(root, 3, i * 0x1000, 0x20_0000, R);
      read(m, i * 0x1000);
      expect(m.device.cacheOccupancy.iotlbEntries).toBe(Math.min(i + 1, m.device.cacheOccupancy.iotlbEntries));
    }
    expect(m.device.cacheOccupancy.iotlbEntries).toBeGreaterThan(8);
    expect(m.device.cacheOccupancy.iotlbEntries).toBeLessThanOrEqual(16);
  });

  it("a cached read-only translation still faults a write, with a fault record (QEMU's hit skips the check)", () => {
    const m = machine({ awBits: 39 });
    const root = m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    expect(read(m, 0x1000).ok).toBe(true);
    expect(m.device.dmaWrite(SID, 0x1000n, new Uint8Array(1))).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
    expect(m.device.stats.iotlbHits).toBe(1);
    expect(m.device.stats.faultsRecorded).toBe(1);
  });
});

describe("caching mode: what CM changes", () => {
  function scenario(cachingMode: boolean, invalidate: boolean) {
    const m = machine({ awBits: 39, cachingMode });
    const root = m.tables.context(SID, { did: 1 });
    m.tables.context(SID + 1, { did: 2, present: false });
    enableTranslation(m);
    // Not present yet: both requests fault.
    expect(read(m, 0x1000).ok).toBe(false);
    expect(read(m, 0, SID + 1).ok).toBe(false);
    // Made present.
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    const root2 = m.tables.context(SID + 1, { did: 2 });
    m.tables.map(root2, 3, 0, 0x20_0000, R);
    if (invalidate) {
      contextInvalidate(m, 3, 0, SID + 1); // device-selective, DID 0: drops the negative context entry
      iotlbInvalidate(m, 2, 2);
      iotlbInvalidate(m, 3, 1, 0x1000n, 0);
    }
    return { page: read(m, 0x1000).ok, context: read(m, 0, SID + 1).ok };
  }
  it("CM=0: not-present results are never cached", () => {
    expect(scenario(false, false)).toEqual({ page: true, context: true });
  });
  it("CM=1: a guest that skips the invalidation keeps faulting (negative entries, context tagged DID 0)", () => {
    expect(scenario(true, false)).toEqual({ page: false, context: false });
  });
  it("CM=1: the invalidations the spec asks for make the new mappings visible", () => {
    expect(scenario(true, true)).toEqual({ page: true, context: true });
  });
  it("CM=1 with negativeCaching off behaves like CM=0", () => {
    const m = machine({ awBits: 39, cachingMode: true, negativeCaching: false });
    const root = m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    expect(read(m, 0x1000).ok).toBe(false);
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    expect(read(m, 0x1000).ok).toBe(true);
  });
  it("a cached not-present page gives the fault of each access type", () => {
    const m = machine({ awBits: 39, cachingMode: true });
    m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    expect(read(m, 0x1000)).toEqual({ ok: false, reason: FaultReason.ReadNotPermitted });
    expect(m.device.dmaWrite(SID, 0x1000n, new Uint8Array(1))).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
    expect(m.device.stats.iotlbHits).toBe(1);
  });
  it("SRTP with CAP.ESRTPS and TE changes drop every cached entry", () => {
    const m = machine({ awBits: 39, esrtps: true });
    const root = m.tables.context(SID, { did: 1 });
    enableTranslation(m);
    m.tables.map(root, 3, 0, 0x20_0000, R);
    read(m, 0);
    expect(m.device.cacheOccupancy).toEqual({ contextEntries: 1, iotlbEntries: 1 });
    m.device.writeRegister(Reg.GCMD, 4, 0xc000_0000n); // TE | SRTP
    expect(m.device.cacheOccupancy).toEqual({ contextEntries: 0, iotlbEntries: 0 });
  });
});
