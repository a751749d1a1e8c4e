/**
 * The strict checker on hand-built tables: each kind of report with its fields, what is not a
 * bug (equivalent tables, correct invalidations, CM = 0 not-present changes), deduplication,
 * bad options and hostile input.
 */
import { describe, expect, it } from "vitest";
import { Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";
import type { DriverBugReport, VtdOptions } from "../index.ts";
import { VtdDevice, GuestRam } from "../index.ts";

const SID = 0x20; // 00:04.0
const IVA = 0xf0, IOTLB = 0xf8;

function checked(options: Partial<VtdOptions> = {}): Machine & { reports: DriverBugReport[] } {
  const reports: DriverBugReport[] = [];
  const m = machine({ awBits: 39, ...options, checker: { onReport: (r) => reports.push(r), ...(typeof options.checker === "object" ? options.checker : {}) } });
  return { ...m, reports };
}
function contextInvalidate(m: Machine, sid: number, did: number): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (3n << 61n) | (BigInt(sid) << 16n) | BigInt(did));
}
function pageInvalidate(m: Machine, did: number, address: number, am = 0): void {
  m.device.writeRegister(IVA, 8, BigInt(address) | BigInt(am));
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (3n << 60n) | (BigInt(did) << 32n));
}
function domainInvalidate(m: Machine, did: number): void {
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (2n << 60n) | (BigInt(did) << 32n));
}
const read = (m: Machine, iova: number, sid = SID) => m.device.dmaRead(sid, iova, new Uint8Array(4));
const write = (m: Machine, iova: number, sid = SID) => m.device.dmaWrite(sid, iova, new Uint8Array(4));

/** The unit's translation stage (private): the checker installs its hook there. */
const translatorOf = (m: Machine): object => (m.device as unknown as { translator: object }).translator;

describe("off by default", () => {
  it("no checker, and the translation path is the class's own (nothing installed on the instance)", () => {
    const m = machine();
    expect(m.device.checker).toBeUndefined();
    expect(Object.hasOwn(translatorOf(m), "translate")).toBe(false);
    const on = checked();
    expect(on.device.checker).toBeDefined();
    expect(Object.hasOwn(translatorOf(on), "translate")).toBe(true);
  });

  it("a bad option is an error naming it", () => {
    const memory = new GuestRam(1 << 20);
    const make = (checker: unknown) => () => new VtdDevice({ memory, checker } as VtdOptions);
    expect(make(1)).toThrow(/option checker: expected true, false or/);
    expect(make({ onreport: () => {} })).toThrow(/option checker\.onreport: unknown/);
    expect(make({ onReport: 5 })).toThrow(/checker\.onReport: expected a function/);
    expect(make({ cpuView: {} })).toThrow(/checker\.cpuView: expected an object with read32/);
    expect(make({ cpuView: { read32: () => 0, lineSize: 24 } })).toThrow(/checker\.cpuView\.lineSize/);
    expect(make({ reportLimit: -1 })).toThrow(/checker\.reportLimit/);
    expect(make(true)().checker).toBeDefined();
    expect(make(false)().checker).toBeUndefined();
  });
});

describe("stale-cache: a present cached entry that the tables no longer give", () => {
  it("IOTLB: the leaf now points elsewhere; reported once with requester, IOVA, both entries and the PSI", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x1000, 0x20_0000, R | W);
    m.ram.direct[0x20_0000] = 1;
    expect(read(m, 0x1000).ok).toBe(true);
    expect(m.reports).toEqual([]);
    m.ram.write64(pte, 0x30_0000n | R | W);
    const into = new Uint8Array(1);
    m.device.dmaRead(SID, 0x1000, into);
    expect(into[0]).toBe(1); // the checker changes nothing: the unit still uses its stale entry
    expect(m.reports).toHaveLength(1);
    const r = m.reports[0]!;
    expect(r).toMatchObject({
      kind: "stale-cache", sid: SID, device: "00:04.0", iova: 0x1000n, write: false,
      cached: { structure: "iotlb-entry", present: true, level: 1, output: 0x20_0000n, read: true, write: true },
      current: { structure: "paging-entries", present: true, level: 1, output: 0x30_0000n, read: true, write: true },
      missing: { action: "iotlb-invalidation", granularity: "page", did: 3, address: 0x1000n, am: 0, text: "page-selective IOTLB invalidation DID 3 addr 0x1000 AM 0" },
    });
    expect(r.message).toMatch(/^driver bug \(stale-cache\): 00:04\.0 read at IOVA 0x1000: .*0x200000.*0x300000.*page-selective IOTLB invalidation DID 3/);
    // The same bug again: counted, not reported.
    read(m, 0x1000);
    write(m, 0x1800);
    expect(m.reports).toHaveLength(1);
    expect(m.device.checker!.duplicates).toBe(2);
    // The invalidation the report names makes it right.
    pageInvalidate(m, 3, 0x1000);
    read(m, 0x1000);
    expect(m.reports).toHaveLength(1);
    expect(m.device.checker!.reports).toEqual(m.reports);
  });

  it("IOTLB: an unmapped page (present -> not present without invalidation)", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x5000, 0x20_0000, R);
    read(m, 0x5000);
    m.ram.write64(pte, 0n);
    expect(read(m, 0x5000).ok).toBe(true); // stale, as hardware may be
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache",
      cached: { present: true, output: 0x20_0000n, read: true, write: false },
      current: { present: false, read: false, write: false, level: 1 },
    });
  });

  it("IOTLB: a partial permission increase (r -> rw) is also stale until invalidated (VT-d §6.1, CM = 0)", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x5000, 0x20_0000, R);
    read(m, 0x5000);
    m.ram.write64(pte, 0x20_0000n | R | W);
    expect(write(m, 0x5000).ok).toBe(false); // the unit still denies the write
    expect(m.reports.map((r) => [r.kind, r.write, (r.cached as { write: boolean }).write, (r.current as { write: boolean }).write])).toEqual([["stale-cache", true, false, true]]);
  });

  it("a 2 MiB leaf replaced by an equivalent 4 KiB table is no bug; a changed page inside it is, named with AM 9", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 5 });
    enableTranslation(m);
    const base = 0x4000_0000, out = 0x200_0000;
    const pde = m.tables.map(root, 3, base, out, R | W, 2);
    read(m, base + 0x3000);
    const table = m.tables.page();
    for (let i = 0; i < 512; i++) m.ram.write64(table + i * 8, BigInt(out + i * 4096) | R | W);
    m.ram.write64(pde, BigInt(table) | R | W);
    for (let i = 0; i < 512; i += 7) read(m, base + i * 4096);
    expect(m.reports).toEqual([]);
    m.ram.write64(table + 9 * 8, 0n);
    for (let i = 0; i < 512; i++) read(m, base + i * 4096);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache", iova: BigInt(base + 9 * 4096),
      cached: { structure: "iotlb-entry", level: 2, output: BigInt(out + 9 * 4096) },
      current: { present: false },
      missing: { did: 5, address: BigInt(base), am: 9, text: `page-selective IOTLB invalidation DID 5 addr 0x40000000 AM 9` },
    });
  });

  it("one stale 2 MiB leaf whose whole range moved is one report, not 512", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 5 });
    enableTranslation(m);
    const pde = m.tables.map(root, 3, 0x4000_0000, 0x200_0000, R | W, 2);
    read(m, 0x4000_0000);
    m.ram.write64(pde, 0x400_0000n | R | W | 0x80n);
    for (let i = 0; i < 512; i++) read(m, 0x4000_0000 + i * 4096);
    expect(m.reports).toHaveLength(1);
    expect(m.device.checker!.duplicates).toBe(511);
  });

  it("context cache: the entry now names another domain; the device-selective invalidation is named", () => {
    const m = checked();
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    read(m, 0x1000);
    const other = m.tables.context(SID, { did: 4 });
    m.tables.map(other, 3, 0x1000, 0x30_0000, R);
    read(m, 0x1000);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache",
      cached: { structure: "context-entry", present: true, did: 3, tableRoot: BigInt(root) },
      current: { structure: "context-entry", present: true, did: 4, tableRoot: BigInt(other) },
      missing: {
        action: "context-cache-invalidation", granularity: "device", sid: SID, did: 3,
        text: "device-selective context-cache invalidation SID 00:04.0 DID 3, then a domain-selective IOTLB invalidation DID 3",
      },
    });
    contextInvalidate(m, SID, 3);
    domainInvalidate(m, 3);
    read(m, 0x1000);
    expect(m.reports).toHaveLength(1);
  });

  it("device-TLB (ATS, TT = 1): the endpoint's entry after an IOTLB-only invalidation; the device-TLB invalidation clears it", () => {
    const m = checked({ deviceIotlb: true });
    const root = m.tables.context(SID, { did: 2, tt: 1 });
    enableTranslation(m);
    const queue = new Queue(m).enable();
    const pte = m.tables.map(root, 3, 0x7000, 0x20_0000, R | W);
    read(m, 0x7000);
    m.ram.write64(pte, 0x30_0000n | R | W);
    queue.submit(desc.iotlbPage(2, 0x7000n));
    read(m, 0x7000);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "stale-cache",
      cached: { structure: "device-tlb-entry", output: 0x20_0000n },
      current: { output: 0x30_0000n },
      missing: { action: "device-tlb-invalidation", sid: SID, address: 0x7000n, text: "device-TLB invalidation SID 00:04.0 addr 0x7000 S 0" },
    });
    queue.submit(desc.deviceTlb(SID, 0x7000n));
    read(m, 0x7000);
    expect(m.reports).toHaveLength(1);
  });
});

describe("missing-cm-invalidation: CM = 1 negative entries made present without an invalidation", () => {
  it("IOTLB: the device faulted there, the page was mapped, the unit still uses its negative entry", () => {
    const m = checked({ cachingMode: true });
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    m.tables.map(root, 3, 0x1000, 0x20_0000, R); // makes the tables down to level 1
    expect(read(m, 0x2000).ok).toBe(false);
    m.tables.map(root, 3, 0x2000, 0x21_0000, R);
    expect(read(m, 0x2000).ok).toBe(false); // the stale fault
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation", iova: 0x2000n,
      cached: { structure: "iotlb-entry", present: false, read: false, write: false },
      current: { present: true, output: 0x21_0000n, read: true, write: false },
      missing: { action: "iotlb-invalidation", did: 3, address: 0x2000n, am: 0 },
    });
    pageInvalidate(m, 3, 0x2000);
    expect(read(m, 0x2000).ok).toBe(true);
    expect(m.reports).toHaveLength(1);
  });

  it("context: a not-present context entry cached (DID 0) and then made present; the DID 0 invalidation is named", () => {
    const m = checked({ cachingMode: true });
    m.tables.contextTable(0);
    enableTranslation(m);
    expect(read(m, 0x1000).ok).toBe(false);
    const root = m.tables.context(SID, { did: 7 });
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    expect(read(m, 0x1000).ok).toBe(false);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "missing-cm-invalidation",
      cached: { structure: "context-entry", present: false, did: 0 },
      current: { structure: "context-entry", present: true, did: 7 },
      missing: { did: 0, text: "device-selective context-cache invalidation SID 00:04.0 DID 0, then a domain-selective IOTLB invalidation DID 7" },
    });
    contextInvalidate(m, SID, 0);
    expect(read(m, 0x1000).ok).toBe(true);
    expect(m.reports).toHaveLength(1);
  });

  it("CM = 0: the same changes need no invalidation and are no bug", () => {
    const m = checked({ cachingMode: false });
    m.tables.contextTable(0);
    enableTranslation(m);
    expect(read(m, 0x1000).ok).toBe(false);
    const root = m.tables.context(SID, { did: 7 });
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    expect(read(m, 0x2000).ok).toBe(false);
    m.tables.map(root, 3, 0x2000, 0x21_0000, R);
    expect(read(m, 0x1000).ok).toBe(true);
    expect(read(m, 0x2000).ok).toBe(true);
    expect(m.reports).toEqual([]);
  });
});

describe("unflushed-table-write: ECAP.C = 0 and the CPU's view of memory", () => {
  /** A CPU view: RAM, with some dwords the CPU holds in its cache (not written back). */
  const withCpuCache = (coherent: boolean) => {
    const lines = new Map<number, number>();
    const m = checked({ coherent, checker: { cpuView: { read32: (a) => lines.get(a) ?? m.ram.read32(a) } } });
    const store64 = (address: number, value: bigint) => {
      lines.set(address, Number(value & 0xffff_ffffn));
      lines.set(address + 4, Number(value >> 32n));
    };
    return { m, store64, flush: () => lines.clear() };
  };

  it("a PTE stored but not flushed: reported with the stale and the CPU's bytes and the line to flush", () => {
    const { m, store64, flush } = withCpuCache(false);
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    m.ram.write64(pte, 0n); // RAM still has the page unmapped; the CPU's cache has the mapping
    store64(pte, 0x20_0000n | R);
    expect(read(m, 0x1000).ok).toBe(false);
    expect(m.reports).toHaveLength(1);
    expect(m.reports[0]).toMatchObject({
      kind: "unflushed-table-write", sid: SID, iova: 0x1000n,
      cached: { structure: "table-entry", table: "paging", level: 1, address: BigInt(pte), value: 0n },
      current: { structure: "table-entry", table: "paging", level: 1, address: BigInt(pte), value: 0x20_0001n },
      missing: { action: "cache-line-flush", line: BigInt(pte - (pte % 64)) },
    });
    expect(m.reports[0]!.missing.text).toMatch(/^CLFLUSH of the line at 0x[0-9a-f]+ after the store to the level-1 paging entry/);
    flush();
    m.ram.write64(pte, 0x20_0000n | R);
    expect(read(m, 0x1000).ok).toBe(true);
    expect(m.reports).toHaveLength(1);
  });

  it("the first differing entry on the unit's walk is named (an unflushed root entry)", () => {
    const { m, store64 } = withCpuCache(false);
    const root = m.tables.context(SID, { did: 3 });
    m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    enableTranslation(m);
    const rootEntry = m.tables.root; // bus 0
    const value = m.ram.read64(rootEntry);
    m.ram.write64(rootEntry, 0n);
    store64(rootEntry, value);
    read(m, 0x1000);
    expect(m.reports.map((r) => [r.kind, (r.cached as { table: string }).table, (r.current as { value: bigint }).value])).toEqual([["unflushed-table-write", "root", value]]);
  });

  it("an unflushed change that does not change the translation (an ignored bit) is no bug", () => {
    const { m, store64 } = withCpuCache(false);
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    store64(pte, 0x20_0000n | R | 0x200n);
    expect(read(m, 0x1000).ok).toBe(true);
    expect(m.reports).toEqual([]);
  });

  it("ECAP.C = 1: the unit snoops, the CPU's view is never compared", () => {
    const { m, store64 } = withCpuCache(true);
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const pte = m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    store64(pte, 0n);
    read(m, 0x1000);
    expect(m.reports).toEqual([]);
  });
});

describe("no false reports, no endless stream, no throw", () => {
  it("a driver that invalidates after every change produces no report (CM = 1)", () => {
    const m = checked({ cachingMode: true });
    m.tables.contextTable(0);
    enableTranslation(m);
    read(m, 0x1000);
    const root = m.tables.context(SID, { did: 3 });
    contextInvalidate(m, SID, 0);
    domainInvalidate(m, 3);
    for (let i = 0; i < 16; i++) {
      read(m, 0x1000 + i * 4096);
      m.tables.map(root, 3, 0x1000 + i * 4096, 0x20_0000 + i * 4096, R | W);
      pageInvalidate(m, 3, 0x1000 + i * 4096);
      expect(read(m, 0x1000 + i * 4096).ok).toBe(true);
    }
    for (let i = 0; i < 16; i += 2) {
      m.ram.write64(m.tables.entryOf(root, 3, 0x1000 + i * 4096), 0n);
      pageInvalidate(m, 3, 0x1000 + i * 4096);
    }
    for (let i = 0; i < 16; i++) read(m, 0x1000 + i * 4096);
    expect(m.reports).toEqual([]);
    expect(m.device.checker!.inspected).toBeGreaterThan(40);
  });

  it("reportLimit: later reports are counted, not kept; a reset forgets what was reported", () => {
    const m = checked({ checker: { reportLimit: 1 } });
    const root = m.tables.context(SID, { did: 3 });
    enableTranslation(m);
    const a = m.tables.map(root, 3, 0x1000, 0x20_0000, R);
    const b = m.tables.map(root, 3, 0x2000, 0x21_0000, R);
    read(m, 0x1000);
    read(m, 0x2000);
    m.ram.write64(a, 0n);
    m.ram.write64(b, 0n);
    read(m, 0x1000);
    read(m, 0x2000);
    expect(m.reports).toHaveLength(1);
    expect(m.device.checker!.dropped).toBe(1);
  });

  it("a throwing listener or CPU view, and garbage tables, never make the unit throw", () => {
    const m = machine({
      awBits: 48, cachingMode: true,
      checker: { onReport: () => { throw new Error("listener"); }, cpuView: { read32: () => { throw new Error("view"); } } },
    });
    let seed = 12345;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 0x10_0000; i += 4) m.ram.write32(0x10_0000 + i, random() & (random() & 1 ? 0xffff_ffff : 0xffff_f003));
    enableTranslation(m);
    for (let i = 0; i < 2000; i++) {
      const sid = random() & 0xffff;
      const iova = (random() % 0x10_0000) * 4096 + (random() & 0xfff);
      expect(() => read(m, iova, sid)).not.toThrow();
      if (i % 100 === 0) for (let j = 0; j < 64; j++) m.ram.write32(0x10_0000 + (random() % 0x4_0000) * 4, random());
    }
    for (const odd of [Infinity, 2 ** 60, 4096.5]) expect(() => m.device.dmaRead(SID, odd, new Uint8Array(4))).not.toThrow();
    // Infinity and 4096.5 are no bus addresses: aborted before translation, so not inspected.
    expect(m.device.checker!.inspected).toBe(2001);
  });
});
