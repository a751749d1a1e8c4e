import { describe, expect, it } from "vitest";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { FRCD_OFFSET, Fsts, Gcmd, Reg } from "../../spec/registers.ts";
import { command, compatibility, irMachine, irte, remappable, TABLE, type IrMachine } from "../../../test/support/interrupt-remapping.ts";
import { NOT_AN_INTERRUPT } from "./interrupt-remapping.ts";
import type { TraceEvent } from "../trace.ts";

const EDU = 0x20;
const FAULT_VECTOR = 0x60;

/** The first fault record: FI (lo qword) and the hi qword's fields. */
function record(m: IrMachine): { fi: bigint; f: boolean; t: number; fr: number; sid: number } {
  const lo = m.device.readRegister(FRCD_OFFSET, 8);
  const hi = m.device.readRegister(FRCD_OFFSET + 8, 8);
  return { fi: lo, f: (hi >> 63n) === 1n, t: Number((hi >> 62n) & 1n), fr: Number((hi >> 32n) & 0xffn), sid: Number(hi & 0xffffn) };
}

/** A unit with remapping on and the fault event unmasked to FEADDR 0xFEE00000, FEDATA FAULT_VECTOR. */
function unit(options: Parameters<typeof irMachine>[0] = {}, s = 7): IrMachine {
  const m = irMachine(options, s);
  m.device.writeRegister(Reg.FEDATA, 4, BigInt(FAULT_VECTOR));
  m.device.writeRegister(Reg.FEADDR, 4, 0xfee0_0000n);
  m.device.writeRegister(Reg.FECTL, 4, 0n);
  return m;
}

describe("remappable-format interrupts through IRTEs", () => {
  it("an MSI for handle 5 goes out as the IRTE's compatibility-format message", () => {
    const m = unit();
    m.writeIrte(5, irte({ vector: 0x41, apicId: 3 }));
    expect(m.send(EDU, remappable(5))).toEqual({ ok: true, address: 0xfee0_3000n, data: 0x4041 });
    expect(m.device.stats.interruptsRemapped).toBe(1);
  });

  it("SHV: the index is handle + subhandle; handle[15] is address bit 2", () => {
    const m = unit({}, 15);
    m.writeIrte(0x23, irte({ vector: 0x23 }));
    m.writeIrte(0x8001, irte({ vector: 0x81 }));
    expect(m.send(EDU, remappable(0x20, 3))).toMatchObject({ ok: true, data: 0x4023 });
    expect(m.send(EDU, remappable(0x8001))).toMatchObject({ ok: true, data: 0x4081 });
    expect(m.send(EDU, remappable(0x8000, 1))).toMatchObject({ ok: true, data: 0x4081 });
  });

  it("without SHV (an I/O APIC's request) the data's vector and trigger mode are not used: the IRTE's are", () => {
    const m = unit();
    m.writeIrte(9, irte({ vector: 0x39, tm: 1 }));
    const r = remappable(9);
    expect(m.device.interruptRequest(0xf0f8, BigInt(r.address), 0x31)).toEqual({ ok: true, address: 0xfee0_0000n, data: 0xc039 });
  });

  it("the number path allocates nothing and agrees", () => {
    const m = unit();
    m.writeIrte(1, irte({ vector: 0x51, apicId: 2, dm: 1 }));
    const r = remappable(1);
    expect(m.device.remapInterrupt(EDU, r.address, r.data)).toBe(true);
    expect([m.device.interrupt.address, m.device.interrupt.data]).toEqual([0xfee0_2004, 0x4051]);
    m.writeIrte(1, irte({ present: false }));
    expect(m.device.remapInterrupt(EDU, remappable(2).address, 0)).toBe(false);
    expect(m.device.interrupt.fault).toBe(FaultReason.IrteNotPresent);
  });

  it("the trace shows each remap and each fault", () => {
    const m = unit();
    const events: TraceEvent[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_ir_remap" || e.type === "vtd_ir_fault") events.push(e); });
    m.writeIrte(1, irte({ vector: 0x51 }));
    m.send(EDU, remappable(1));
    m.send(EDU, remappable(2));
    expect(events).toEqual([
      { type: "vtd_ir_remap", sid: EDU, index: 1, how: "remapped", address: BigInt(remappable(1).address), data: 0, remappedAddress: 0xfee0_0000n, remappedData: 0x4051 },
      { type: "vtd_ir_fault", sid: EDU, index: 2, reason: FaultReason.IrteNotPresent, address: BigInt(remappable(2).address), data: 0, recorded: true },
    ]);
  });
});

describe("interrupt-remapping faults (VT-d §5.1.4.1) in the fault recording registers", () => {
  const cases: { name: string; reason: FaultReason; index: number; qualified: boolean; setup(m: IrMachine): { address: number; data: number } }[] = [
    { name: "20h: a reserved data bit (31:16) in a remappable request", reason: 0x20, index: -1, qualified: false,
      setup: (m) => { m.writeIrte(4, irte()); return { address: remappable(4, 0).address, data: 0x1_0000 }; } },
    { name: "21h: an index beyond the table (2^(S+1) = 256 entries)", reason: 0x21, index: 300, qualified: false, setup: () => remappable(300) },
    { name: "22h: an IRTE with P = 0", reason: 0x22, index: 7, qualified: true, setup: (m) => { m.writeIrte(7, irte({ present: false })); return remappable(7); } },
    { name: "24h: a reserved bit in a present IRTE", reason: 0x24, index: 8, qualified: true,
      setup: (m) => { m.writeIrte(8, irte({ lo: 1n << 13n })); return remappable(8); } },
    { name: "25h: a compatibility-format interrupt with CFIS = 0", reason: 0x25, index: -1, qualified: false, setup: () => compatibility(0, 0x30) },
    { name: "26h: a requester the IRTE's SVT/SQ/SID refuses", reason: 0x26, index: 10, qualified: true,
      setup: (m) => { m.writeIrte(10, irte({ svt: 1, sid: 0x28 })); return remappable(10); } },
  ];

  for (const c of cases) {
    it(`${c.name}: blocked, recorded (FI ${c.index < 0 ? "0" : "[63:48] = index"}, SID, T = 0), PPF, fault event`, () => {
      const m = unit();
      const result = m.send(EDU, c.setup(m));
      expect(result).toEqual({ ok: false, reason: c.reason });
      expect(record(m)).toEqual({ fi: c.index < 0 ? 0n : BigInt(c.index) << 48n, f: true, t: 0, fr: c.reason, sid: EDU });
      expect(m.device.readRegister(Reg.FSTS, 4) & Fsts.PPF).toBe(Fsts.PPF);
      expect(m.interrupts).toEqual([{ address: 0xfee0_0000n, data: FAULT_VECTOR }]);
      expect(m.device.stats.interruptsBlocked).toBe(1);
    });
  }

  it("23h: the IRTE cannot be read (the table is not memory); never cached", () => {
    const m = unit();
    m.device.writeRegister(Reg.IRTA, 8, 0x1_0000_0000n | 7n);
    command(m, Gcmd.SIRTP);
    expect(m.send(EDU, remappable(6))).toEqual({ ok: false, reason: FaultReason.InterruptTableReadError });
    expect(record(m)).toMatchObject({ fi: 6n << 48n, fr: 0x23, sid: EDU });
    m.send(EDU, remappable(6));
    expect(m.device.stats.interruptEntryCacheMisses).toBe(2);
  });

  it("21h also when the IRTE would lie above the host address width", () => {
    const m = unit({ awBits: 39 });
    m.device.writeRegister(Reg.IRTA, 8, (1n << 39n) - 0x1000n | 15n);
    command(m, Gcmd.SIRTP);
    expect(m.send(EDU, remappable(255))).toEqual({ ok: false, reason: FaultReason.InterruptTableReadError }); // the last page: not RAM
    m.device.writeRegister(FRCD_OFFSET + 8, 8, 1n << 63n); // F cleared
    expect(m.send(EDU, remappable(256))).toEqual({ ok: false, reason: FaultReason.InterruptIndexBeyondTable });
    expect(record(m)).toMatchObject({ f: true, fi: 256n << 48n, fr: 0x21 });
  });

  it("FPD = 1 in the IRTE: 22h, 24h and 26h are not recorded (still blocked); no fault event", () => {
    const m = unit();
    m.writeIrte(1, irte({ present: false, fpd: true }));
    m.writeIrte(2, irte({ fpd: true, hi: 1n << 40n }));
    m.writeIrte(3, irte({ fpd: true, svt: 1, sid: 0x99 }));
    expect(m.send(EDU, remappable(1))).toEqual({ ok: false, reason: 0x22 });
    expect(m.send(EDU, remappable(2))).toEqual({ ok: false, reason: 0x24 });
    expect(m.send(EDU, remappable(3))).toEqual({ ok: false, reason: 0x26 });
    expect(record(m).f).toBe(false);
    expect(m.interrupts).toEqual([]);
    expect(m.device.stats.faultsSuppressed).toBe(3);
  });

  it("the faults found before an IRTE is read are not qualified: an FPD elsewhere does not hide them", () => {
    const m = unit();
    m.writeIrte(0, irte({ present: false, fpd: true }));
    expect(m.send(EDU, remappable(0, 0x1_0000))).toEqual({ ok: false, reason: 0x20 });
    expect(record(m)).toMatchObject({ f: true, fr: 0x20 });
  });

  it("fault records compress by source-id, and each source gets its own record (NFR + 1 = 4)", () => {
    const m = unit({ faultRecords: 4 });
    m.send(EDU, remappable(200, 0x100)); // 21h
    m.send(EDU, remappable(201, 0x100)); // same source: not recorded again
    m.send(0x28, remappable(202, 0x100));
    expect(m.device.stats.faultsRecorded).toBe(2);
    expect(m.device.stats.faultsDropped).toBe(1);
  });
});

describe("compatibility-format interrupts", () => {
  it("CFIS = 0 blocks them (25h); CFIS = 1 passes them unchanged, bits 1:0 included", () => {
    const m = unit();
    const r = compatibility(2, 0x33);
    expect(m.send(EDU, r)).toEqual({ ok: false, reason: 0x25 });
    command(m, Gcmd.CFI);
    const low = (r.address | 3) >>> 0;
    expect(m.send(EDU, { address: low, data: 0xc033 })).toEqual({ ok: true, address: BigInt(low), data: 0xc033 });
    expect(m.device.stats.interruptsPassedThrough).toBe(1);
    command(m, Gcmd.CFI, false);
    expect(m.send(EDU, r).ok).toBe(false);
  });

  it("a remappable-format request is remapped whatever CFIS says", () => {
    const m = unit();
    command(m, Gcmd.CFI);
    m.writeIrte(1, irte({ vector: 0x71 }));
    expect(m.send(EDU, remappable(1))).toMatchObject({ ok: true, data: 0x4071 });
  });
});

describe("no interrupt request: never a throw, never a record", () => {
  it("bad arguments give { ok: false, reason: 0 } and touch nothing", () => {
    const m = unit();
    m.writeIrte(0, irte());
    const bad: [unknown, unknown, unknown][] = [
      [EDU, 0xfed0_0000n, 0], [EDU, 0xfef0_0000n, 0], [EDU, 0x1_fee0_0000n, 0], [EDU, -1n, 0], [EDU, 1n << 64n, 0], [EDU, 1n << 200n, 0],
      [EDU, 0xfee0_0010 + 0.5, 0], [EDU, Number.NaN, 0], [EDU, Infinity, 0], [EDU, "0xfee00010", 0], [EDU, undefined, 0], [EDU, {}, 0],
      [EDU, 0xfee0_0010n, -1], [EDU, 0xfee0_0010n, 2 ** 32], [EDU, 0xfee0_0010n, 0.5], [EDU, 0xfee0_0010n, NaN], [EDU, 0xfee0_0010n, 1n],
      [EDU, 0xfee0_0010n, "1"], [-1, 0xfee0_0010n, 0], [0x1_0000, 0xfee0_0010n, 0], [1.5, 0xfee0_0010n, 0], [NaN, 0xfee0_0010n, 0],
      [0x20n, 0xfee0_0010n, 0], [null, 0xfee0_0010n, 0], [{ valueOf: () => { throw new Error("no"); } }, 0xfee0_0010n, 0],
    ];
    for (const [sid, address, data] of bad) {
      const call = () => m.device.interruptRequest(sid as number, address as bigint, data as number);
      expect(call).not.toThrow();
      expect(call()).toEqual({ ok: false, reason: NOT_AN_INTERRUPT });
      expect(m.device.remapInterrupt(sid as number, address as number, data as number)).toBe(false);
    }
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(m.device.stats.interruptsBlocked + m.device.stats.interruptsRemapped).toBe(0);
    // the edges of the range are interrupt requests
    expect(m.send(EDU, { address: 0xfee0_0010, data: 0 }).ok).toBe(true);
    expect(m.device.interruptRequest(EDU, 0xfeef_ffecn, 0)).toEqual({ ok: false, reason: 0x25 }); // bit 4 clear: compatibility
    expect(m.device.interruptRequest(EDU, 0xfeef_fffcn, 0)).toEqual({ ok: false, reason: 0x21 }); // handle 0xffff
  });

  it("a table base above the address width is ignored above HAW, as RTADDR's", () => {
    const m = unit({ awBits: 39 });
    m.device.writeRegister(Reg.IRTA, 8, (1n << 60n) | BigInt(TABLE) | 7n);
    command(m, Gcmd.SIRTP);
    m.writeIrte(3, irte({ vector: 0x43 }));
    m.queue.submit([4n, 0n]); // global IEC
    expect(m.send(EDU, remappable(3))).toMatchObject({ ok: true, data: 0x4043 });
  });
});
