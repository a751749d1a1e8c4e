import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice, DMA_ABORT } from "../index.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { FRCD_OFFSET, Reg } from "../../spec/registers.ts";
import { PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { R, W, type Machine } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";

const SID = 0x0018; // 00:03.0
const UPPER_SID = 0x0190; // 01:12.0: devfn 0x90 uses the root entry's upper half
const DATA = 0x80_0000;
const RAM = 64 << 20;

function unit(options: object = {}): Machine & { tables: ScalableTables } {
  const ram = new GuestRam(RAM);
  const interrupts: { address: bigint; data: number }[] = [];
  const device = new VtdDevice({ memory: ram, onInterrupt: (address, data) => interrupts.push({ address, data }), scalableMode: true, pasidBits: 20, ...options });
  return { ram, device, tables: new ScalableTables(ram), interrupts };
}

function fill(m: Machine, at: number, seed: number): void {
  for (let i = 0; i < 4096; i++) m.ram.direct[at + i] = (i * 7 + seed) & 0xff;
}

function read(m: Machine, iova: number, options?: { pasid?: number; privileged?: boolean }, sid = SID) {
  const into = new Uint8Array(8);
  const result = m.device.dmaRead(sid, iova, into, options);
  return { result, into };
}

/** The fault record 0: reason, SID, PP, PV, PRIV, T (read), address. */
function record(m: Machine) {
  const lo = m.device.readRegister(FRCD_OFFSET, 8), hi = m.device.readRegister(FRCD_OFFSET + 8, 8);
  return {
    f: Number((hi >> 63n) & 1n), reason: Number((hi >> 32n) & 0xffn), sid: Number(hi & 0xffffn), pp: Number((hi >> 31n) & 1n),
    pv: Number((hi >> 40n) & 0xfffffn), priv: Number((hi >> 29n) & 1n), read: Number((hi >> 62n) & 1n), address: lo,
  };
}

/** A second-stage domain for `sid`: RID_PASID `rid`, PASID `pasid` too, one 4 KiB page of data at `iova`. */
function secondStage(m: Machine & { tables: ScalableTables }, o: { sid?: number; iova?: number; perm?: bigint; pasidEnable?: boolean } = {}) {
  const t = m.tables;
  const dir = t.smContext(o.sid ?? SID, { pasidEnable: o.pasidEnable ?? true, ridPasid: 0, pdts: 0 });
  const ss = t.pasidEntry(dir, 0, { pgtt: Pgtt.SecondStage, aw: 2, did: 7 });
  t.map(ss, 4, o.iova ?? 0x4000, DATA, o.perm ?? (R | W));
  t.pasidEntry(dir, 5, { pgtt: Pgtt.SecondStage, aw: 2, did: 7, secondStageRoot: ss });
  fill(m, DATA, 3);
  enableScalable(m, t.root);
  return { dir, ss };
}

describe("scalable mode: the walk to the PASID-table entry and second-stage translation (VT-d §3.4.3)", () => {
  it("a request without PASID uses RID_PASID; with PASID its own entry; both reuse legacy mode's page walk", () => {
    const m = unit();
    secondStage(m);
    const plain = read(m, 0x4010);
    expect(plain.result).toEqual({ ok: true });
    expect([...plain.into]).toEqual([...m.ram.direct.subarray(DATA + 0x10, DATA + 0x18)]);
    const tagged = read(m, 0x4010, { pasid: 5 });
    expect(tagged.result).toEqual({ ok: true });
    expect([...tagged.into]).toEqual([...plain.into]);
    const write = m.device.dmaWrite(SID, 0x4100, new Uint8Array([9, 8, 7]), { pasid: 5 });
    expect(write).toEqual({ ok: true });
    expect([...m.ram.direct.subarray(DATA + 0x100, DATA + 0x103)]).toEqual([9, 8, 7]);
  });

  it("devfn 128-255 use the root entry's upper half (UP, UCTP)", () => {
    const m = unit();
    secondStage(m, { sid: UPPER_SID });
    expect(read(m, 0x4000, undefined, UPPER_SID).result).toEqual({ ok: true });
    // The lower half is not present: a devfn below 128 on that bus faults 39h.
    expect(read(m, 0x4000, undefined, 0x0108).result).toEqual({ ok: false, reason: FaultReason.SmRootEntryNotPresent });
  });

  it("pass-through (PGTT 100) keeps the address; first stage on a second-stage-only unit is an invalid entry", () => {
    const m = unit();
    const dir = m.tables.smContext(SID, { pasidEnable: true });
    m.tables.pasidEntry(dir, 0, { pgtt: Pgtt.PassThrough });
    m.tables.pasidEntry(dir, 1, { pgtt: Pgtt.FirstStage, firstStageRoot: m.tables.page() });
    m.tables.pasidEntry(dir, 2, { pgtt: Pgtt.Nested });
    fill(m, DATA, 5);
    enableScalable(m, m.tables.root);
    const r = read(m, DATA + 8);
    expect(r.result).toEqual({ ok: true });
    expect(r.into[0]).toBe(m.ram.direct[DATA + 8]);
    expect(read(m, 0, { pasid: 1 }).result).toEqual({ ok: false, reason: FaultReason.PasidEntryInvalid });
    expect(read(m, 0, { pasid: 2 }).result).toEqual({ ok: false, reason: FaultReason.PasidEntryInvalid });
  });

  it("records PP, PV and PRIV for a request-with-PASID, none for a request without", () => {
    const m = unit();
    secondStage(m, { perm: R });
    expect(m.device.dmaWrite(SID, 0x4000, new Uint8Array(4), { pasid: 5, privileged: true }).ok).toBe(false);
    expect(record(m)).toMatchObject({ f: 1, reason: FaultReason.SmWriteNotPermitted, sid: SID, pp: 1, pv: 5, priv: 1, read: 0, address: 0x4000n });
    m.device.writeRegister(FRCD_OFFSET + 12, 4, 0x8000_0000n);
    expect(m.device.dmaWrite(SID, 0x4000, new Uint8Array(4)).ok).toBe(false);
    expect(record(m)).toMatchObject({ f: 1, reason: FaultReason.SmWriteNotPermitted, pp: 0, pv: 0, priv: 0 });
  });

  it("TTM = 01 on a unit without scalable mode is 30h; TTM 10 on a scalable unit too; a PASID in legacy mode is 31h", () => {
    const legacy = unit({ scalableMode: false, pasidBits: undefined });
    enableScalable(legacy, legacy.tables.root);
    expect(read(legacy, 0).result).toEqual({ ok: false, reason: FaultReason.InvalidRootTableMode });
    expect(read(legacy, 0, { pasid: 1 }).result).toEqual({ ok: false, reason: DMA_ABORT }); // no ECAP.PASID: not a request this unit takes
    const reserved = unit();
    enableScalable(reserved, reserved.tables.root, 2);
    expect(read(reserved, 0).result).toEqual({ ok: false, reason: FaultReason.InvalidRootTableMode });
    const inLegacy = unit();
    inLegacy.tables.context(SID, { did: 1, tt: 2 });
    enableScalable(inLegacy, inLegacy.tables.root, 0);
    expect(read(inLegacy, 0x1000).result).toEqual({ ok: true });
    expect(read(inLegacy, 0x1000, { pasid: 3 }).result).toEqual({ ok: false, reason: FaultReason.PasidRequestInLegacyMode });
    expect(record(inLegacy)).toMatchObject({ reason: 0x31, pp: 1, pv: 3 });
  });

  it("arguments no bus carries abort and record nothing", () => {
    const m = unit({ pasidBits: 4 });
    secondStage(m);
    for (const options of [{ pasid: 16 }, { pasid: -1 }, { pasid: 1.5 }, { privileged: true }, { pasid: 1, privileged: 1 }, null, 7] as unknown[]) {
      expect(m.device.dmaRead(SID, 0x4000, new Uint8Array(4), options as never)).toEqual({ ok: false, reason: DMA_ABORT });
    }
    expect(m.device.dmaRead(SID, -1, new Uint8Array(4), { pasid: 1 })).toEqual({ ok: false, reason: DMA_ABORT });
    expect(m.device.dmaRead(SID, 0x4000, "x" as never, { pasid: 1 })).toEqual({ ok: false, reason: DMA_ABORT });
    expect(record(m).f).toBe(0);
    expect(m.device.dmaRead(SID, 0x4000, new Uint8Array(4), {})).toEqual({ ok: true });
  });
});

describe("scalable mode: every fault reason the walk raises", () => {
  type Case = [string, FaultReason, (m: ReturnType<typeof unit>) => void, { pasid?: number; write?: boolean; iova?: number }?];
  const beyondRam = RAM + 0x10_0000;
  const cases: Case[] = [
    ["root table outside RAM", FaultReason.SmRootTableReadError, (m) => enableScalable(m, beyondRam)],
    ["root entry half not present", FaultReason.SmRootEntryNotPresent, (m) => enableScalable(m, m.tables.root)],
    ["root entry reserved bit 1", FaultReason.SmRootEntryReserved, (m) => {
      m.tables.smContextTable(SID);
      m.ram.write64(m.tables.root, m.ram.read64(m.tables.root) | 2n);
      enableScalable(m, m.tables.root);
    }],
    ["context table outside RAM", FaultReason.SmContextTableReadError, (m) => {
      m.ram.write64(m.tables.root, BigInt(beyondRam) | 1n);
      enableScalable(m, m.tables.root);
    }],
    ["context entry P = 0", FaultReason.SmContextEntryNotPresent, (m) => { m.tables.smContext(SID, { present: false }); enableScalable(m, m.tables.root); }],
    ["context entry reserved bit 5", FaultReason.SmContextEntryReserved, (m) => { m.tables.smContext(SID, { extra: [0x20n, 0n, 0n, 0n] }); enableScalable(m, m.tables.root); }],
    ["context entry PRE (no ECAP.PRS)", FaultReason.SmContextEntryReserved, (m) => { m.tables.smContext(SID, { extra: [0x10n, 0n, 0n, 0n] }); enableScalable(m, m.tables.root); }],
    ["context entry DTE without ECAP.DT", FaultReason.SmContextEntryReserved, (m) => { m.tables.smContext(SID, { extra: [0x4n, 0n, 0n, 0n] }); enableScalable(m, m.tables.root); }],
    ["context entry bits 255:128", FaultReason.SmContextEntryReserved, (m) => { m.tables.smContext(SID, { extra: [0n, 0n, 0n, 1n << 40n] }); enableScalable(m, m.tables.root); }],
    ["PASIDE = 0 for a request-with-PASID", FaultReason.SmPasidDisabled, (m) => { secondStage(m, { pasidEnable: false }); }, { pasid: 5 }],
    ["PASID beyond the directory PDTS sizes", FaultReason.SmPasidBeyondDirectory, (m) => { secondStage(m); }, { pasid: 128 * 64 }],
    ["RID_PASID beyond the directory", FaultReason.SmRidPasidError, (m) => { m.tables.smContext(SID, { ridPasid: 0x10000 }); enableScalable(m, m.tables.root); }],
    ["PASID directory outside RAM", FaultReason.PasidDirectoryReadError, (m) => { m.tables.smContext(SID, {}, beyondRam); enableScalable(m, m.tables.root); }],
    ["PASID directory entry P = 0", FaultReason.PasidDirectoryEntryNotPresent, (m) => { m.tables.smContext(SID); enableScalable(m, m.tables.root); }],
    ["PASID directory entry reserved bit 2", FaultReason.PasidDirectoryEntryReserved, (m) => {
      const dir = m.tables.smContext(SID);
      m.ram.write64(dir, BigInt(m.tables.page()) | 5n);
      enableScalable(m, m.tables.root);
    }],
    ["PASID table outside RAM", FaultReason.PasidTableReadError, (m) => {
      const dir = m.tables.smContext(SID);
      m.ram.write64(dir, BigInt(beyondRam) | 1n);
      enableScalable(m, m.tables.root);
    }],
    ["PASID-table entry P = 0", FaultReason.PasidEntryNotPresent, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { present: false }); enableScalable(m, m.tables.root); }],
    ["PASID-table entry reserved bits 511:192", FaultReason.PasidEntryReserved, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { extra: [0n, 0n, 0n, 0n, 0n, 0n, 0n, 1n] }); enableScalable(m, m.tables.root); }],
    ["PASID-table entry SSADE (no SSADS)", FaultReason.PasidEntryReserved, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { extra: [0x200n] }); enableScalable(m, m.tables.root); }],
    ["PASID-table entry AW not in SAGAW", FaultReason.PasidEntryInvalid, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { aw: 3 }); enableScalable(m, m.tables.root); }],
    ["PASID-table entry PGTT 000", FaultReason.PasidEntryInvalid, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { pgtt: 0 }); enableScalable(m, m.tables.root); }],
    ["SSPTPTR outside RAM", FaultReason.SecondStageTablePointerInvalid, (m) => { const dir = m.tables.smContext(SID); m.tables.pasidEntry(dir, 0, { secondStageRoot: beyondRam }); enableScalable(m, m.tables.root); }],
    ["second-stage table outside RAM", FaultReason.SecondStageReadError, (m) => {
      const dir = m.tables.smContext(SID);
      const ss = m.tables.pasidEntry(dir, 0, { aw: 1 });
      m.ram.write64(ss, BigInt(beyondRam) | 3n);
      enableScalable(m, m.tables.root);
    }],
    ["second-stage leaf reserved bit 11 (no ECAP.SC)", FaultReason.SecondStageReserved, (m) => {
      const dir = m.tables.smContext(SID);
      const ss = m.tables.pasidEntry(dir, 0, { aw: 1 });
      m.tables.map(ss, 3, 0x4000, DATA, R | W, 1, 0x800n);
      enableScalable(m, m.tables.root);
    }],
    ["second-stage read not permitted", FaultReason.SmReadNotPermitted, (m) => { secondStage(m, { perm: W }); }],
    ["second-stage write not permitted", FaultReason.SmWriteNotPermitted, (m) => { secondStage(m, { perm: R }); }, { write: true }],
    ["address beyond the second stage's AW", FaultReason.SmAddressBeyondMgaw, (m) => { secondStage(m); }, { iova: 2 ** 48 }],
    ["output in the interrupt range", FaultReason.SmInterruptAddress, (m) => {
      const dir = m.tables.smContext(SID);
      m.tables.pasidEntry(dir, 0, { pgtt: Pgtt.PassThrough });
      enableScalable(m, m.tables.root);
    }, { iova: 0xfee0_0000 }],
  ];
  for (const [name, reason, setup, o] of cases) {
    it(`${name}: 0x${reason.toString(16)}`, () => {
      const m = unit();
      setup(m);
      const options = o?.pasid === undefined ? undefined : { pasid: o.pasid };
      const bytes = new Uint8Array(4);
      const iova = o?.iova ?? 0x4000;
      const result = o?.write ? m.device.dmaWrite(SID, iova, bytes, options) : m.device.dmaRead(SID, iova, bytes, options);
      expect(result).toEqual({ ok: false, reason });
      expect(record(m)).toMatchObject({ f: 1, reason, sid: SID, pp: o?.pasid === undefined ? 0 : 1 });
    });
  }

  it("FPD in the context, PASID-directory or PASID-table entry keeps qualified faults out of the records", () => {
    for (const where of ["context", "directory", "entry"] as const) {
      const m = unit();
      const dir = m.tables.smContext(SID, { fpd: where === "context" });
      m.tables.pasidTable(dir, 0, where === "directory");
      const ss = m.tables.pasidEntry(dir, 0, { aw: 2, fpd: where === "entry" });
      m.tables.map(ss, 4, 0x4000, DATA, R);
      enableScalable(m, m.tables.root);
      expect(m.device.dmaWrite(SID, 0x4000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
      expect(record(m).f, where).toBe(0);
      expect(m.device.readRegister(Reg.FSTS, 4), where).toBe(0n);
    }
  });
});
