import { describe, expect, it } from "vitest";
import { FaultReason } from "../index.ts";
import { FRCD_OFFSET, Fsts, Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";

const SID = 0x0018; // 00:03.0
const frcd = (m: Machine, i = 0) => ({
  lo: m.device.readRegister(FRCD_OFFSET + 16 * i, 8),
  hi: m.device.readRegister(FRCD_OFFSET + 16 * i + 8, 8),
});
const record = (m: Machine, i = 0) => {
  const { lo, hi } = frcd(m, i);
  return { address: lo, sid: Number(hi & 0xffffn), reason: Number((hi >> 32n) & 0xffn), read: ((hi >> 62n) & 1n) === 1n, pending: hi >> 63n === 1n };
};

function setup(options = {}, aw = 1) {
  const m = machine({ awBits: 48, ...options });
  const root = m.tables.context(SID, { did: 1, aw });
  enableTranslation(m);
  return { m, root, levels: aw + 2 };
}

describe("translation", () => {
  it("TE off: DMA goes to the address as given", () => {
    const m = machine();
    m.ram.direct.set([1, 2, 3, 4], 0x5000);
    const into = new Uint8Array(4);
    expect(m.device.dmaRead(SID, 0x5000n, into)).toEqual({ ok: true });
    expect([...into]).toEqual([1, 2, 3, 4]);
  });

  for (const aw of [1, 2]) {
    it(`${aw + 2}-level walk maps 4K pages with permissions`, () => {
      const { m, root, levels } = setup({}, aw);
      m.tables.map(root, levels, 0x4000_0000, 0x20_0000, R | W);
      m.tables.map(root, levels, 0x4000_1000, 0x30_0000, R);
      m.ram.direct.set([9, 8, 7], 0x20_0010);
      const into = new Uint8Array(3);
      expect(m.device.dmaRead(SID, 0x4000_0010n, into).ok).toBe(true);
      expect([...into]).toEqual([9, 8, 7]);
      expect(m.device.dmaWrite(SID, 0x4000_0020n, new Uint8Array([5])).ok).toBe(true);
      expect(m.ram.direct[0x20_0020]).toBe(5);
      expect(m.device.dmaWrite(SID, 0x4000_1000n, new Uint8Array([5]))).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
      expect(m.device.dmaRead(SID, 0x4000_1000n, into).ok).toBe(true);
    });
  }

  it("2M and 1G leaves", () => {
    const { m, root, levels } = setup({}, 2);
    m.tables.map(root, levels, 0x8000_0000, 0x40_0000, R | W, 2);
    m.tables.map(root, levels, 0x1_0000_0000, 0x0, R, 3);
    expect(m.device.translateForTest(SID, 0x8012_3456n, false)).toEqual({ ok: true, address: 0x52_3456n, limit: 0x20_0000 - 0x12_3456 });
    expect(m.device.translateForTest(SID, 0x1_0123_4567n, false)).toMatchObject({ ok: true, address: 0x123_4567n });
  });

  it("a transfer crossing pages translates each page; nothing moves past a fault", () => {
    const { m, root, levels } = setup();
    m.tables.map(root, levels, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, levels, 0x2000, 0x50_0000, R | W);
    const data = new Uint8Array(0x1800).fill(0xab);
    expect(m.device.dmaWrite(SID, 0x1800n, data).ok).toBe(true);
    expect(m.ram.direct[0x20_0800]).toBe(0xab);
    expect(m.ram.direct[0x50_0fff]).toBe(0xab);
    expect(m.ram.direct[0x50_1000]).toBe(0);
    const r = m.device.dmaWrite(SID, 0x2800n, new Uint8Array(0x1000).fill(0xcd));
    expect(r).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
    expect(m.ram.direct[0x50_0800]).toBe(0xcd); // the first page moved
    expect(record(m)).toMatchObject({ address: 0x3000n, sid: SID, reason: 5, read: false, pending: true });
  });

  it("never a byte outside guest RAM: a translation into nowhere aborts without a fault record", () => {
    const { m, root, levels } = setup();
    m.tables.map(root, levels, 0x1000, 0x7fff_0000, R | W);
    expect(m.device.dmaRead(SID, 0x1000n, new Uint8Array(8))).toEqual({ ok: false, reason: 0 });
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(machine().device.dmaRead(SID, -1n, new Uint8Array(1)).ok).toBe(false);
  });

  it("pass-through context entries", () => {
    const m = machine({ awBits: 39 });
    m.tables.context(SID, { did: 2, tt: 2 });
    enableTranslation(m);
    expect(m.device.translateForTest(SID, 0x12_3456n, true)).toMatchObject({ ok: true, address: 0x12_3456n });
    expect(m.device.translateForTest(SID, 1n << 39n, false)).toEqual({ ok: false, reason: FaultReason.AddressBeyondMgaw });
    const noPt = machine({ passThrough: false });
    noPt.tables.context(SID, { did: 2, tt: 2 });
    enableTranslation(noPt);
    expect(noPt.device.translateForTest(SID, 0n, false)).toEqual({ ok: false, reason: FaultReason.ContextEntryInvalid });
  });
});

describe("fault reasons, each provoked and recorded", () => {
  const cases: [string, (m: Machine, root: number) => void, number, bigint, boolean][] = [
    ["root entry not present", (m) => m.ram.write64(m.tables.root, 0n), FaultReason.RootEntryNotPresent, 0x1000n, false],
    ["context entry not present", (m) => m.tables.context(SID, { did: 1, present: false }), FaultReason.ContextEntryNotPresent, 0x1000n, false],
    ["context AW not in SAGAW", (m) => m.tables.context(SID, { did: 1, aw: 3 }), FaultReason.ContextEntryInvalid, 0x1000n, false],
    ["context TT reserved", (m) => m.tables.context(SID, { did: 1, tt: 3 }), FaultReason.ContextEntryInvalid, 0x1000n, false],
    ["context TT=1 without device-TLB", (m) => m.tables.context(SID, { did: 1, tt: 1 }), FaultReason.ContextEntryInvalid, 0x1000n, false],
    ["address beyond MGAW", () => {}, FaultReason.AddressBeyondMgaw, 1n << 39n, false],
    ["write without W", (m, root) => m.tables.map(root, 3, 0x1000, 0x20_0000, R), FaultReason.WriteNotPermitted, 0x1000n, true],
    ["read of a not-present page", () => {}, FaultReason.ReadNotPermitted, 0x1000n, false],
    ["read of a write-only page", (m, root) => m.tables.map(root, 3, 0x1000, 0x20_0000, W), FaultReason.ReadNotPermitted, 0x1000n, false],
    ["paging entry outside RAM", (m, root) => m.ram.write64(root, 0x7000_0000n | 3n), FaultReason.PagingEntryReadError, 0x1000n, false],
    ["SLPTPTR outside RAM", (m) => m.tables.context(SID, { did: 1, tableRoot: 0x7000_0000 }), FaultReason.ContextEntryInvalid, 0x1000n, false],
    ["root table outside RAM", (m) => { m.device.writeRegister(Reg.RTADDR, 8, 0x7000_0000n); m.device.writeRegister(Reg.GCMD, 4, 0xc000_0000n); }, FaultReason.RootTableReadError, 0x1000n, false],
    ["context table outside RAM", (m) => m.ram.write64(m.tables.root, 0x7000_0000n | 1n), FaultReason.ContextTableReadError, 0x1000n, false],
    ["root entry reserved bits", (m) => m.ram.write64(m.tables.root + 8, 1n), FaultReason.RootEntryReserved, 0x1000n, false],
    ["context entry reserved bits", (m) => m.ram.write64(m.tables.contextTable(0) + (SID & 0xff) * 16 + 8, 0x100_0101n), FaultReason.ContextEntryReserved, 0x1000n, false],
    ["paging entry reserved bits", (m, root) => m.tables.map(root, 3, 0x1000, 0x20_0000, R | W, 1, 0x800n), FaultReason.PagingEntryReserved, 0x1000n, false],
    ["2M leaf with reserved address bits", (m, root) => m.tables.map(root, 3, 0x20_0000, 0x40_1000, R | W, 2), FaultReason.PagingEntryReserved, 0x20_0000n, false],
    ["translation into the interrupt range", (m, root) => m.tables.map(root, 3, 0x1000, 0xfee0_0000, R | W), FaultReason.InterruptAddress, 0x1000n, true],
  ];
  for (const [name, provoke, reason, address, write] of cases) {
    it(`${name}: reason 0x${reason.toString(16)}`, () => {
      const m = machine({ awBits: 39 });
      const root = m.tables.context(SID, { did: 1, aw: 1 });
      enableTranslation(m);
      provoke(m, root);
      const result = write ? m.device.dmaWrite(SID, address, new Uint8Array(4)) : m.device.dmaRead(SID, address, new Uint8Array(4));
      expect(result).toEqual({ ok: false, reason });
      expect(record(m)).toEqual({ address: address & ~0xfffn, sid: SID, reason, read: !write, pending: true });
      expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.PPF);
    });
  }

  it("qualified faults are suppressed by FPD; unqualified ones are not", () => {
    const m = machine({ awBits: 39 });
    m.tables.context(SID, { did: 1, fpd: true });
    m.tables.context(SID + 1, { did: 1, fpd: true, present: false });
    enableTranslation(m);
    expect(m.device.dmaRead(SID, 0x1000n, new Uint8Array(1)).ok).toBe(false);
    expect(m.device.dmaRead(SID + 1, 0x1000n, new Uint8Array(1)).ok).toBe(false);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(m.device.stats.faultsSuppressed).toBe(2);
    m.ram.write64(m.tables.root + 16, 0x1n | 0x7000_0000n); // bus 1: context table outside RAM (not qualified)
    m.device.dmaRead(0x100, 0n, new Uint8Array(1));
    expect(record(m).reason).toBe(FaultReason.ContextTableReadError);
  });
});

describe("fault recording registers and the fault event", () => {
  it("records round-robin, compresses the same source-id, overflows into PFO", () => {
    const m = machine({ awBits: 39, faultRecords: 2 });
    enableTranslation(m); // root table empty: every request faults with reason 1
    m.device.writeRegister(Reg.FEADDR, 4, 0xfee0_0000n);
    m.device.writeRegister(Reg.FEDATA, 4, 0x41n);
    m.device.writeRegister(Reg.FECTL, 4, 0n);
    m.device.dmaRead(0x10, 0x1000n, new Uint8Array(1));
    expect(m.interrupts).toEqual([{ address: 0xfee0_0000n, data: 0x41 }]);
    m.device.dmaRead(0x10, 0x2000n, new Uint8Array(1)); // same SID pending: not recorded
    m.device.dmaRead(0x11, 0x3000n, new Uint8Array(1));
    expect(record(m, 1)).toMatchObject({ sid: 0x11, address: 0x3000n });
    expect(m.interrupts).toHaveLength(1); // PPF was already set
    m.device.dmaRead(0x12, 0x4000n, new Uint8Array(1)); // both records full
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.PFO | Fsts.PPF);
    // Software services record 0 and 1, then PFO: the next fault lands in record 0 again and interrupts.
    m.device.writeRegister(FRCD_OFFSET + 12, 4, 0x8000_0000n);
    m.device.writeRegister(FRCD_OFFSET + 16 + 12, 4, 0x8000_0000n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.PFO);
    m.device.dmaRead(0x13, 0x5000n, new Uint8Array(1)); // PFO still set: dropped
    expect(record(m, 0).pending).toBe(false);
    m.device.writeRegister(Reg.FSTS, 4, Fsts.PFO);
    m.device.dmaRead(0x13, 0x5000n, new Uint8Array(1));
    expect(record(m, 0)).toMatchObject({ sid: 0x13, pending: true });
    expect(m.interrupts).toHaveLength(2);
  });

  it("a masked fault event stays pending (IP) and is sent when unmasked; servicing clears IP", () => {
    const m = machine({ awBits: 39 });
    enableTranslation(m);
    m.device.dmaRead(0x10, 0n, new Uint8Array(1));
    expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0xc000_0000n);
    expect(m.interrupts).toHaveLength(0);
    m.device.writeRegister(Reg.FECTL, 4, 0n);
    expect(m.interrupts).toHaveLength(1);
    expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0n);
    // Masked again, a new fault after servicing sets IP; clearing the record withdraws it.
    m.device.writeRegister(FRCD_OFFSET + 12, 4, 0x8000_0000n);
    m.device.writeRegister(Reg.FECTL, 4, 0x8000_0000n);
    m.device.dmaRead(0x11, 0n, new Uint8Array(1));
    expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0xc000_0000n);
    m.device.writeRegister(FRCD_OFFSET + 12, 4, 0x8000_0000n);
    expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0x8000_0000n);
    m.device.writeRegister(Reg.FECTL, 4, 0n);
    expect(m.interrupts).toHaveLength(1);
  });
});
