import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { Gcmd, Reg } from "../../spec/registers.ts";
import { FirstStagePte as Fs, PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { R, W, type Machine } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";
import { WideQueue } from "../../../test/support/scalable-workload.ts";

const SID = 0x0018;
const QUEUE = 0x30_0000;
const A = 0x80_0000, B = 0x80_1000;

type Unit = Machine & { tables: ScalableTables; queue: WideQueue };

function unit(options: object = {}): Unit {
  const ram = new GuestRam(64 << 20);
  const device = new VtdDevice({ memory: ram, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 8, ...options });
  ram.direct.fill(0xaa, A, A + 4096);
  ram.direct.fill(0xbb, B, B + 4096);
  const m: Machine & { tables: ScalableTables } = { ram, device, tables: new ScalableTables(ram), interrupts: [] };
  return { ...m, queue: new WideQueue(m, QUEUE, 0) };
}

/** Scalable mode on (RTADDR with TTM 01, SRTP, TE), then the 256-bit queue (GCMD keeps TE). */
function enable(u: Unit): void {
  enableScalable(u, u.tables.root);
  u.queue.enable();
  expect(u.device.readRegister(Reg.GSTS, 4) & (Gcmd.TE | Gcmd.QIE)).toBe(Gcmd.TE | Gcmd.QIE);
}

/** Submits one 256-bit descriptor (low two qwords given) and checks it completed. */
function submit(u: Unit, q0: bigint, q1 = 0n): void {
  u.queue.submit(q0, q1);
  expect(u.device.readRegister(Reg.FSTS, 4) & 0x10n).toBe(0n);
  expect(u.device.readRegister(Reg.IQH, 8)).toBe(u.device.readRegister(Reg.IQT, 8));
}
const pasidCache = (g: number, did: number, pasid: number) => 7n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n);
const pasidIotlb = (g: number, did: number, pasid: number) => 6n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n);
const iotlbPage = (did: number) => 2n | (3n << 4n) | (BigInt(did) << 16n);
const contextGlobal = 1n | (1n << 4n);

const first = (u: Unit, pasid?: number) => {
  const into = new Uint8Array(1);
  const result = u.device.dmaRead(SID, 0x7000, into, pasid === undefined ? undefined : { pasid });
  return result.ok ? into[0] : result.reason;
};

describe("scalable mode's PASID cache and IOTLB (VT-d §6.2), invalidated by the descriptors that name them", () => {
  it("a PASID-table entry stays cached until a PASID-cache invalidation of its PASID, its domain, or all", () => {
    for (const [g, did, pasid] of [[1, 4, 0], [0, 4, 9], [3, 9, 9]] as const) {
      const u = unit();
      const dir = u.tables.smContext(SID, { pasidEnable: true });
      const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 4 });
      u.tables.map(ss, 4, 0x7000, A, R | W);
      enable(u);
      expect(first(u)).toBe(0xaa);
      u.ram.write64(u.tables.pasidEntryAt(dir, 0), 0n);
      expect(first(u)).toBe(0xaa); // served from the caches
      submit(u, pasidCache(1, 4, 1)); // another PASID of the domain: kept
      submit(u, pasidCache(1, 5, 0)); // the PASID in another domain: kept
      expect(first(u)).toBe(0xaa);
      submit(u, pasidCache(g, did, pasid));
      // The IOTLB still holds the translation (PASID-cache invalidation leaves it): the spec has software flush it too.
      submit(u, iotlbPage(4), 0x7000n);
      expect(first(u), `G ${g}`).toBe(FaultReason.PasidEntryNotPresent);
    }
  });

  it("a context-cache invalidation drops the PASID-cache entries under it", () => {
    const u = unit();
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    u.tables.pasidEntry(dir, 0, { pgtt: Pgtt.PassThrough, did: 2 });
    enable(u);
    const into = new Uint8Array(1);
    expect(u.device.dmaRead(SID, A, into).ok).toBe(true);
    u.ram.write64(u.tables.smContextAt(SID), 0n);
    expect(u.device.dmaRead(SID, A, into).ok).toBe(true);
    submit(u, contextGlobal);
    expect(u.device.dmaRead(SID, A, into)).toEqual({ ok: false, reason: FaultReason.SmContextEntryNotPresent });
  });

  it("second stage: a changed leaf is seen after an IOTLB invalidation of its page in the domain", () => {
    const u = unit();
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 4 });
    const leaf = u.tables.map(ss, 4, 0x7000, A, R | W);
    enable(u);
    expect(first(u)).toBe(0xaa);
    u.ram.write64(leaf, BigInt(B) | R | W);
    expect(first(u)).toBe(0xaa);
    submit(u, iotlbPage(5), 0x7000n);
    expect(first(u)).toBe(0xaa);
    submit(u, iotlbPage(4), 0x7000n);
    expect(first(u)).toBe(0xbb);
  });

  it("first stage: PASID-based IOTLB invalidation of the PASID (all, or its page) in the domain, not another PASID's", () => {
    for (const g of [2, 3]) {
      const u = unit();
      const dir = u.tables.smContext(SID, { pasidEnable: true });
      const fs = u.tables.page();
      u.tables.pasidEntry(dir, 3, { pgtt: Pgtt.FirstStage, firstStageRoot: fs, did: 6 });
      const leaf = u.tables.mapFirstStage(fs, 0x7000, A, BigInt(Fs.RW | Fs.US));
      enable(u);
      expect(first(u, 3)).toBe(0xaa);
      u.ram.write64(leaf, BigInt(B) | BigInt(Fs.RW | Fs.US | Fs.P));
      submit(u, pasidIotlb(g, 6, 4), 0x7000n);
      expect(first(u, 3)).toBe(0xaa);
      submit(u, pasidIotlb(g, 6, 3), 0x7000n);
      expect(first(u, 3), `G ${g}`).toBe(0xbb);
    }
  });

  it("a cached read does not serve a write the entry does not allow, nor hide the Dirty flag", () => {
    const u = unit();
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 4 });
    u.tables.map(ss, 4, 0x7000, A, R);
    const fs = u.tables.page();
    u.tables.pasidEntry(dir, 1, { pgtt: Pgtt.FirstStage, firstStageRoot: fs, did: 6 });
    const leaf = u.tables.mapFirstStage(fs, 0x7000, B, BigInt(Fs.RW | Fs.US));
    enable(u);
    expect(first(u)).toBe(0xaa);
    expect(u.device.dmaWrite(SID, 0x7000, new Uint8Array(1))).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
    expect(first(u, 1)).toBe(0xbb);
    expect(u.ram.read64(leaf) & BigInt(Fs.D)).toBe(0n);
    expect(u.device.dmaWrite(SID, 0x7000, new Uint8Array([1]), { pasid: 1 }).ok).toBe(true);
    expect(u.ram.read64(leaf) & BigInt(Fs.D)).toBe(BigInt(Fs.D));
  });

  it("TE off and on drops everything cached", () => {
    const u = unit();
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    const ss = u.tables.pasidEntry(dir, 0, { aw: 2, did: 4 });
    u.tables.map(ss, 4, 0x7000, A, R | W);
    enable(u);
    expect(first(u)).toBe(0xaa);
    u.ram.write64(u.tables.pasidEntryAt(dir, 0), 0n);
    u.device.writeRegister(Reg.GCMD, 4, Gcmd.QIE);
    u.device.writeRegister(Reg.GCMD, 4, Gcmd.QIE | Gcmd.TE);
    expect(u.device.readRegister(Reg.IQH, 8)).toBe(0n);
    expect(first(u)).toBe(FaultReason.PasidEntryNotPresent);
  });
});

describe("register-based invalidation in scalable mode (VT-d §6.5.1)", () => {
  it("is refused while TTM = 01 is latched (CAIG = IAIG = 00, nothing dropped) and works in legacy mode on the same unit", () => {
    const u = unit();
    const dir = u.tables.smContext(SID, { pasidEnable: true });
    u.tables.pasidEntry(dir, 0, { pgtt: Pgtt.PassThrough, did: 2 });
    enableScalable(u, u.tables.root);
    const into = new Uint8Array(1);
    expect(u.device.dmaRead(SID, A, into).ok).toBe(true);
    u.ram.write64(u.tables.smContextAt(SID), 0n);
    u.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
    expect((u.device.readRegister(Reg.CCMD, 8) >> 59n) & 3n).toBe(0n);
    expect(u.device.dmaRead(SID, A, into).ok).toBe(true);
    u.device.writeRegister(0xf8, 8, (1n << 63n) | (1n << 60n));
    expect((u.device.readRegister(0xf8, 8) >> 57n) & 3n).toBe(0n);
    u.device.writeRegister(Reg.RTADDR, 8, BigInt(u.tables.root));
    u.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    u.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
    expect((u.device.readRegister(Reg.CCMD, 8) >> 59n) & 3n).toBe(1n);
  });
});
