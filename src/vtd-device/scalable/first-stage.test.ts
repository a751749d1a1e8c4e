import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { FirstStagePte as Fs, PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import type { Machine } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";

const SID = 0x0020;
const DATA = 0x90_0000;
const RW = BigInt(Fs.RW), US = BigInt(Fs.US);

function firstStageUnit(entry: { sre?: boolean; wpe?: boolean; nxe?: boolean; fspm?: number } = {}, secondStage = true) {
  const ram = new GuestRam(64 << 20);
  // With the second stage offered too the unit reports ECAP.SRS (supervisor requests), as QEMU 10.0 does.
  const device = new VtdDevice({ memory: ram, scalableMode: true, firstStage: true, secondStage, pasidBits: 8 });
  const tables = new ScalableTables(ram);
  const m: Machine & { tables: ScalableTables } = { ram, device, tables, interrupts: [] };
  const dir = tables.smContext(SID, { pasidEnable: true, ridPasid: 1 });
  const fs = tables.page();
  tables.pasidEntry(dir, 1, { pgtt: Pgtt.FirstStage, firstStageRoot: fs, did: 3, ...entry });
  for (let i = 0; i < 4096; i++) ram.direct[DATA + i] = (i * 5 + 1) & 0xff;
  enableScalable(m, tables.root);
  return { m, fs };
}

const read = (m: Machine, iova: number, options?: { pasid?: number; privileged?: boolean }) => m.device.dmaRead(SID, iova, new Uint8Array(4), options);
const write = (m: Machine, iova: number, options?: { pasid?: number; privileged?: boolean }) => m.device.dmaWrite(SID, iova, new Uint8Array([1, 2, 3, 4]), options);

describe("first-stage translation (VT-d §3.6, IA-32e 4-level paging)", () => {
  it("4 KiB, 2 MiB and 1 GiB pages translate; the unit sets A on every entry used and D on the leaf of a write", () => {
    const { m, fs } = firstStageUnit();
    const leaf4k = m.tables.mapFirstStage(fs, 0x7000, DATA, RW | US);
    m.tables.mapFirstStage(fs, 0x4000_0000 + 0x20_0000, 0x20_0000 * 5, RW | US, 2);
    m.tables.mapFirstStage(fs, 0x80_0000_0000, 0, RW | US, 3);
    const into = new Uint8Array(4);
    expect(m.device.dmaRead(SID, 0x7004, into)).toEqual({ ok: true });
    expect([...into]).toEqual([...m.ram.direct.subarray(DATA + 4, DATA + 8)]);
    expect(m.ram.read64(leaf4k) & BigInt(Fs.A | Fs.D)).toBe(BigInt(Fs.A));
    const pml4e = m.ram.read64(fs);
    expect(pml4e & BigInt(Fs.A)).toBe(BigInt(Fs.A));
    expect(write(m, 0x7000)).toEqual({ ok: true });
    expect(m.ram.read64(leaf4k) & BigInt(Fs.A | Fs.D)).toBe(BigInt(Fs.A | Fs.D));
    expect([...m.ram.direct.subarray(DATA, DATA + 4)]).toEqual([1, 2, 3, 4]);
    expect(write(m, 0x4000_0000 + 0x20_0000 + 0x123)).toEqual({ ok: true });
    expect([...m.ram.direct.subarray(0x20_0000 * 5 + 0x123, 0x20_0000 * 5 + 0x127)]).toEqual([1, 2, 3, 4]);
    const big = new Uint8Array(4);
    expect(m.device.dmaRead(SID, 0x80_0000_0000 + DATA + 8, big)).toEqual({ ok: true });
    expect([...big]).toEqual([...m.ram.direct.subarray(DATA + 8, DATA + 12)]);
  });

  it("not present 71h, reserved bits 72h (PS in a PML4E, XD without NXE), table outside RAM 70h", () => {
    const { m, fs } = firstStageUnit();
    expect(read(m, 0x1000)).toEqual({ ok: false, reason: FaultReason.FirstStageNotPresent });
    const leaf = m.tables.mapFirstStage(fs, 0x7000, DATA, RW | US);
    m.ram.write64(leaf, m.ram.read64(leaf) | (1n << 63n));
    expect(read(m, 0x7000)).toEqual({ ok: false, reason: FaultReason.FirstStageReserved });
    m.ram.write64(fs + 8, BigInt(DATA) | 0x81n);
    expect(read(m, 0x80_0000_0000)).toEqual({ ok: false, reason: FaultReason.FirstStageReserved });
    m.ram.write64(fs + 16, BigInt(128 << 20) | 0x7n);
    expect(read(m, 0x100_0000_0000)).toEqual({ ok: false, reason: FaultReason.FirstStageReadError });
  });

  it("XD is allowed with the PASID entry's NXE", () => {
    const { m, fs } = firstStageUnit({ nxe: true });
    const leaf = m.tables.mapFirstStage(fs, 0x7000, DATA, RW | US);
    m.ram.write64(leaf, m.ram.read64(leaf) | (1n << 63n));
    expect(read(m, 0x7000)).toEqual({ ok: true });
  });

  it("user requests need U/S and R/W at every level; supervisor requests need SRE and, with WPE, R/W", () => {
    const { m, fs } = firstStageUnit({ sre: true });
    m.tables.mapFirstStage(fs, 0x7000, DATA, 0n); // supervisor-only, read-only
    expect(read(m, 0x7000)).toEqual({ ok: false, reason: FaultReason.UserAccessDenied });
    expect(read(m, 0x7000, { pasid: 1, privileged: true })).toEqual({ ok: true });
    expect(write(m, 0x7000, { pasid: 1, privileged: true })).toEqual({ ok: true }); // WPE = 0
    m.tables.mapFirstStage(fs, 0x8000, DATA, US);
    expect(write(m, 0x8000)).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
    const wpe = firstStageUnit({ sre: true, wpe: true });
    wpe.m.tables.mapFirstStage(wpe.fs, 0x7000, DATA, US);
    expect(write(wpe.m, 0x7000, { pasid: 1, privileged: true })).toEqual({ ok: false, reason: FaultReason.SmWriteNotPermitted });
    const noSre = firstStageUnit();
    noSre.m.tables.mapFirstStage(noSre.fs, 0x7000, DATA, RW | US);
    expect(read(noSre.m, 0x7000, { pasid: 1, privileged: true })).toEqual({ ok: false, reason: FaultReason.PasidEntrySupervisorDisabled });
    // A first-stage-only unit (ECAP.SRS = 0, QEMU 10.0's x-flts=on) takes no supervisor request at all: aborted, nothing recorded.
    const noSrs = firstStageUnit({ sre: true }, false);
    noSrs.m.tables.mapFirstStage(noSrs.fs, 0x7000, DATA, RW | US);
    expect(read(noSrs.m, 0x7000, { pasid: 1, privileged: true })).toEqual({ ok: false, reason: 0 });
    expect(read(noSrs.m, 0x7000, { pasid: 1 })).toEqual({ ok: true });
  });

  it("a non-canonical input faults 80h; FSPM 01 (5-level, not offered) is an invalid PASID entry", () => {
    const { m } = firstStageUnit();
    expect(read(m, 2 ** 47)).toEqual({ ok: false, reason: FaultReason.NonCanonicalAddress });
    expect(m.device.dmaRead(SID, 0x8000_0000_0000_0000n, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.NonCanonicalAddress });
    const five = firstStageUnit({ fspm: 1 });
    expect(read(five.m, 0)).toEqual({ ok: false, reason: FaultReason.PasidEntryInvalid });
  });
});
