/**
 * Requests and callers that once fooled or broke the unit (issue L): each case failed before its fix.
 */
import { describe, expect, it } from "vitest";
import { DMA_ABORT, FaultReason } from "./index.ts";
import { FRCD_OFFSET, Fsts, Gcmd, Reg } from "../spec/registers.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../test/support/tables.ts";

const SID = 0x0018;
const record = (m: Machine) => {
  const lo = m.device.readRegister(FRCD_OFFSET, 8);
  const hi = m.device.readRegister(FRCD_OFFSET + 8, 8);
  return { fi: lo, reason: Number((hi >> 32n) & 0xffn), pending: hi >> 63n === 1n };
};
const fsts = (m: Machine) => m.device.readRegister(Reg.FSTS, 4);

describe("fault records keep the request's exact address", () => {
  for (const address of [0xffff_ffff_ffff_fff0n, (1n << 63n) + 0x1234_5678n, (1n << 53n) + 0x1fffn]) {
    it(`FI = bits 63:12 of 0x${address.toString(16)}`, () => {
      const m = machine({ awBits: 48 });
      m.tables.context(SID, { did: 1, aw: 2 });
      enableTranslation(m);
      const result = m.device.dmaRead(SID, address, new Uint8Array(8));
      expect(result).toEqual({ ok: false, reason: FaultReason.AddressBeyondMgaw });
      expect(record(m)).toEqual({ fi: address & ~0xfffn, reason: FaultReason.AddressBeyondMgaw, pending: true });
    });
  }

  it("an address given as a number at or above 2^53 is exact too", () => {
    const m = machine({ awBits: 48 });
    m.tables.context(SID, { did: 1, aw: 2 });
    enableTranslation(m);
    m.device.dmaWrite(SID, 2 ** 60 + 2 ** 40, new Uint8Array(4));
    expect(record(m).fi).toBe((1n << 60n) + (1n << 40n));
  });
});

describe("the public DMA interface never throws", () => {
  const bad: unknown[] = [2n ** 1100n, -1n, 1n << 64n, 0.5, 4096.25, -4096, NaN, Infinity, -Infinity, 2 ** 64, "4096", undefined, null, {}];
  for (const translating of [false, true]) {
    it(`bad addresses abort without a fault record (TE ${translating ? "on" : "off"})`, () => {
      const m = machine();
      m.tables.context(SID, { did: 1 });
      if (translating) enableTranslation(m);
      const events: string[] = [];
      m.device.trace.subscribe((e) => events.push(e.type));
      for (const iova of bad) {
        expect(m.device.dmaRead(SID, iova as bigint, new Uint8Array(8))).toEqual({ ok: false, reason: DMA_ABORT });
        expect(m.device.dmaWrite(SID, iova as bigint, new Uint8Array(8))).toEqual({ ok: false, reason: DMA_ABORT });
      }
      expect(m.device.dmaRead(SID, 0x1000, "not bytes" as unknown as Uint8Array)).toEqual({ ok: false, reason: DMA_ABORT });
      expect(events).not.toContain("vtd_fault");
      expect(fsts(m) & Fsts.PPF).toBe(0n);
    });
  }

  it("an onInterrupt handler that throws does not escape dmaRead; the fault is recorded and counted", () => {
    const m = machine({ onInterrupt: () => { throw new Error("embedder bug"); } });
    m.device.writeRegister(Reg.FECTL, 4, 0n); // unmask the fault event
    enableTranslation(m);
    expect(() => m.device.dmaRead(SID, 0x1000, new Uint8Array(4))).not.toThrow();
    expect(record(m).reason).toBe(FaultReason.RootEntryNotPresent);
    expect(m.device.stats.interruptHandlerErrors).toBe(1);
    expect(m.device.stats.interruptsSent).toBe(1);
  });

  it("register writes with values that are not bigints do not throw", () => {
    const m = machine();
    for (const value of [0.5, NaN, "x", undefined, {}]) {
      expect(() => m.device.writeRegister(Reg.FEDATA, 4, value as bigint)).not.toThrow();
      expect(() => m.device.mmioWrite(Reg.FEDATA, 4, value as number)).not.toThrow();
    }
  });
});

describe("the context-entry checks apply to pass-through entries (LCT.4)", () => {
  for (const [awBits, aw] of [[39, 0], [39, 2], [39, 7], [48, 0], [48, 7]] as const) {
    it(`TT = 2 with AW = ${aw} on a ${awBits}-bit unit faults 0x3 and reads nothing`, () => {
      const m = machine({ awBits });
      m.tables.context(SID, { did: 1, aw, tt: 2 });
      enableTranslation(m);
      m.ram.direct.set([1, 2, 3, 4], 0x8000);
      const into = new Uint8Array(4);
      expect(m.device.dmaRead(SID, 0x8000, into)).toEqual({ ok: false, reason: FaultReason.ContextEntryInvalid });
      expect([...into]).toEqual([0, 0, 0, 0]);
      expect(record(m).reason).toBe(FaultReason.ContextEntryInvalid);
    });
  }

  it("a supported AW still passes through", () => {
    const m = machine({ awBits: 48 });
    m.tables.context(SID, { did: 1, aw: 2, tt: 2 });
    enableTranslation(m);
    expect(m.device.dmaRead(SID, 0x8000, new Uint8Array(4)).ok).toBe(true);
  });
});

describe("FPD on the fast path", () => {
  it("an output in the interrupt range is suppressed with FPD = 1 on the IOTLB hit as on the miss", () => {
    const m = machine();
    const root = m.tables.context(SID, { did: 1, fpd: true });
    m.tables.map(root, 3, 0x4000_0000, 0xfee0_0000, R | W);
    enableTranslation(m);
    // The first request walks (and fills the IOTLB); the second hits it.
    for (let i = 0; i < 2; i++) {
      expect(m.device.dmaWrite(SID, 0x4000_0000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.InterruptAddress });
    }
    expect(m.device.stats.iotlbHits).toBe(1);
    expect(fsts(m) & Fsts.PPF).toBe(0n);
    expect(m.device.stats.faultsSuppressed).toBe(2);
    expect(m.interrupts).toHaveLength(0);
  });
});

describe("RTADDR.TTM", () => {
  for (const ttm of [1n, 2n, 3n]) {
    it(`TTM = ${ttm} (unsupported by this unit) makes every translated request fault 0x30`, () => {
      const m = machine();
      const root = m.tables.context(SID, { did: 1 });
      m.tables.map(root, 3, 0x1000, 0x20_0000, R | W);
      m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.root) | (ttm << 10n));
      m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
      m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
      expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.InvalidRootTableMode });
      expect(record(m).reason).toBe(0x30);
      // Back to legacy mode: the same tables translate.
      m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.root));
      m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP | Gcmd.TE);
      expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4)).ok).toBe(true);
    });
  }
});
