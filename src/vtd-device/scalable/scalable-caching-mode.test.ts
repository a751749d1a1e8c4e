/**
 * Caching mode in scalable mode, per stage (VT-d 5.10 §6.1): with CM = 1 a faulting walk of the
 * PASID structures (context, PASID directory, PASID-table entries) or of second-stage tables is
 * cached and answers until software invalidates it, the way Linux's caching-mode flushes expect;
 * a first-stage fault is never cached (first-stage updates follow the CM = 0 rules). Each case is
 * run with CM = 0 as well, where the fixed entry must be used at once.
 */
import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { Reg } from "../../spec/registers.ts";
import { FirstStagePte as Fs, PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { PASID_INVALIDATION_KINDS } from "../stats.ts";
import { R, W, type Machine } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";
import { WideQueue } from "../../../test/support/scalable-workload.ts";

const SID = 0x0048;
const QUEUE = 0x30_0000;
const A = 0x80_0000;
const IOVA = 0x7000;

type Unit = Machine & { tables: ScalableTables; queue: WideQueue };

function unit(cachingMode: boolean): Unit {
  const ram = new GuestRam(64 << 20);
  const device = new VtdDevice({ memory: ram, cachingMode, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 8 });
  ram.direct.fill(0xaa, A, A + 4096);
  const m: Machine & { tables: ScalableTables } = { ram, device, tables: new ScalableTables(ram), interrupts: [] };
  return { ...m, queue: new WideQueue(m, QUEUE, 0) };
}

function enable(u: Unit): void {
  enableScalable(u, u.tables.root);
  u.queue.enable();
}

/** One 256-bit descriptor through the queue (its low two qwords), checked to complete. */
function submit(u: Unit, q0: bigint, q1 = 0n): void {
  u.queue.submit(q0, q1);
  expect(u.device.readRegister(Reg.FSTS, 4) & 0x10n, "IQE").toBe(0n);
}
const pasidCache = (g: number, did: number, pasid: number) => 7n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n);
const contextDevice = (did: number, sid: number) => 1n | (3n << 4n) | (BigInt(did) << 16n) | (BigInt(sid) << 32n);
const iotlbPage = (did: number) => 2n | (3n << 4n) | (BigInt(did) << 16n);

/** A one-byte read of IOVA through RID_PASID: the byte, or the fault reason. */
function read(u: Unit, pasid?: number): number {
  const into = new Uint8Array(1);
  const result = u.device.dmaRead(SID, IOVA, into, pasid === undefined ? undefined : { pasid });
  return result.ok ? into[0]! : result.reason;
}

describe("caching mode in scalable mode, per stage (VT-d §6.1)", () => {
  it("a not-present PASID-table entry is cached under CM until a PASID-cache invalidation of its PASID (Linux's pasid_flush_caches)", () => {
    for (const cm of [false, true]) {
      const u = unit(cm);
      const dir = u.tables.smContext(SID);
      u.tables.pasidEntry(dir, 0, { present: false });
      enable(u);
      expect(read(u)).toBe(FaultReason.PasidEntryNotPresent);
      const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 5 });
      u.tables.map(ss, 4, IOVA, A, R | W);
      if (!cm) {
        expect(read(u), "CM = 0: the new entry is used at once").toBe(0xaa);
        continue;
      }
      expect(read(u), "CM = 1: the negative entry answers").toBe(FaultReason.PasidEntryNotPresent);
      submit(u, pasidCache(1, 5, 1)); // another PASID: kept
      expect(read(u)).toBe(FaultReason.PasidEntryNotPresent);
      submit(u, pasidCache(1, 5, 0)); // its PASID, with the DID software gave the new entry
      expect(read(u)).toBe(0xaa);
    }
  });

  it("a not-present context entry is cached under CM until a device-selective context invalidation with DID 0 (Linux's domain_context_mapping_one)", () => {
    for (const cm of [false, true]) {
      const u = unit(cm);
      const dir = u.tables.smContext(SID, { present: false });
      const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 5 });
      u.tables.map(ss, 4, IOVA, A, R | W);
      enable(u);
      expect(read(u)).toBe(FaultReason.SmContextEntryNotPresent);
      u.tables.smContext(SID, {}, dir);
      if (!cm) {
        expect(read(u)).toBe(0xaa);
        continue;
      }
      expect(read(u)).toBe(FaultReason.SmContextEntryNotPresent);
      submit(u, contextDevice(0, SID + 1)); // another device: kept
      expect(read(u)).toBe(FaultReason.SmContextEntryNotPresent);
      submit(u, contextDevice(0, SID));
      expect(read(u)).toBe(0xaa);
    }
  });

  it("a not-present second-stage leaf is cached under CM, for reads and writes, until an IOTLB invalidation of its page in the domain", () => {
    for (const cm of [false, true]) {
      const u = unit(cm);
      const dir = u.tables.smContext(SID);
      const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 5 });
      u.tables.map(ss, 4, IOVA + 0x1000, A, R | W); // builds the tables; IOVA's leaf stays not present
      enable(u);
      expect(read(u)).toBe(FaultReason.SmReadNotPermitted);
      expect(u.device.dmaWrite(SID, IOVA, new Uint8Array(1))).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
      u.tables.map(ss, 4, IOVA, A, R | W);
      if (!cm) {
        expect(read(u)).toBe(0xaa);
        continue;
      }
      expect(read(u)).toBe(FaultReason.SmReadNotPermitted);
      expect(u.device.dmaWrite(SID, IOVA, new Uint8Array(1))).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
      submit(u, iotlbPage(6), BigInt(IOVA)); // another domain: kept
      expect(read(u)).toBe(FaultReason.SmReadNotPermitted);
      submit(u, iotlbPage(5), BigInt(IOVA));
      expect(read(u)).toBe(0xaa);
      expect(u.device.dmaWrite(SID, IOVA, new Uint8Array([1])).ok).toBe(true);
    }
  });

  it("a not-present first-stage leaf is never cached, CM or not: the new mapping is used without an invalidation", () => {
    for (const cm of [false, true]) {
      const u = unit(cm);
      const dir = u.tables.smContext(SID);
      const fs = u.tables.page();
      u.tables.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, firstStageRoot: fs, did: 5 });
      u.tables.mapFirstStage(fs, IOVA + 0x1000, A, BigInt(Fs.RW | Fs.US));
      enable(u);
      expect(read(u)).toBe(FaultReason.FirstStageNotPresent);
      u.tables.mapFirstStage(fs, IOVA, A, BigInt(Fs.RW | Fs.US));
      expect(read(u), `CM = ${cm ? 1 : 0}`).toBe(0xaa);
    }
  });

  it("a table that cannot be read is never cached, CM or not", () => {
    const u = unit(true);
    const dir = u.tables.smContext(SID);
    const outside = 128 << 20; // beyond the 64 MiB of RAM
    u.ram.write64(dir, BigInt(outside) | 1n); // the PASID directory entry points outside memory
    enable(u);
    expect(read(u)).toBe(FaultReason.PasidTableReadError);
    u.ram.write64(dir, 0n);
    const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 5 });
    u.tables.map(ss, 4, IOVA, A, R | W);
    expect(read(u)).toBe(0xaa);
  });

  it("counts requests and PASID-entry walks by PGTT, and the PASID descriptors, and keeps them in the snapshot", () => {
    const u = unit(true);
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 5 });
    u.tables.map(ss, 4, IOVA, A, R | W);
    const fs = u.tables.page();
    u.tables.pasidEntry(dir, 1, { pgtt: Pgtt.FirstStage, firstStageRoot: fs, did: 6 });
    u.tables.mapFirstStage(fs, IOVA, A, BigInt(Fs.RW | Fs.US));
    enable(u);
    for (let i = 0; i < 3; i++) expect(read(u)).toBe(0xaa);
    for (let i = 0; i < 2; i++) expect(read(u, 1)).toBe(0xaa);
    submit(u, pasidCache(1, 6, 1));
    expect(read(u, 1)).toBe(0xaa);
    const c = u.device.counters;
    expect(Array.from(c.translationsByPgtt)).toEqual([0, 3, 3, 0, 0, 0, 0, 0]);
    expect(Array.from(c.pasidEntryWalksByPgtt)).toEqual([0, 2, 1, 0, 0, 0, 0, 0]);
    expect(c.pasidInvalidations[PASID_INVALIDATION_KINDS.indexOf("pasid-cache")]).toBe(1);
    expect(u.device.stats.translations, "requests with and without a PASID").toBe(6);
    expect(u.device.stats.contextMisses).toBe(3);
    expect(u.device.counters.contextMissesBySid.get(SID)).toBe(3);

    const restored = unit(true);
    restored.device.restoreState(JSON.parse(JSON.stringify(u.device.saveState())));
    expect(Array.from(restored.device.counters.translationsByPgtt)).toEqual(Array.from(c.translationsByPgtt));
    expect(Array.from(restored.device.counters.pasidEntryWalksByPgtt)).toEqual(Array.from(c.pasidEntryWalksByPgtt));
    expect(Array.from(restored.device.counters.pasidInvalidations)).toEqual(Array.from(c.pasidInvalidations));
  });

  it("a legacy unit's counters section has no scalable part", () => {
    const device = new VtdDevice({ memory: new GuestRam(16 << 20) });
    const snapshot = JSON.parse(JSON.stringify(device.saveState())) as Record<string, Record<string, unknown>>;
    const section = Object.values(snapshot).find((value) => typeof value === "object" && value !== null && "faultsRecordedByReason" in value);
    expect(section).toBeDefined();
    expect(section).not.toHaveProperty("scalable");
  });
});
