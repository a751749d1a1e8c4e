import { describe, expect, it } from "vitest";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { irte, remappable } from "../../../test/support/interrupt-remapping.ts";
import { interruptIndex, irteCheck, irteFaultProcessingDisable, isRemappable, remappedAddress, remappedData, requestReserved, sourceIdValid } from "./irte.ts";

/** The four dwords of an IRTE given as two qwords. */
function dwords([lo, hi]: [bigint, bigint]): [number, number, number, number] {
  return [Number(lo & 0xffff_ffffn), Number(lo >> 32n), Number(hi & 0xffff_ffffn), Number(hi >> 32n)];
}
const check = (e: [bigint, bigint]) => irteCheck(...dwords(e));
const source = (e: [bigint, bigint], sid: number) => sourceIdValid(dwords(e)[2], sid);

describe("the remappable request format (VT-d §5.1.2.2)", () => {
  it("address bit 4 tells the formats apart", () => {
    expect(isRemappable(0xfee0_0010)).toBe(true);
    expect(isRemappable(0xfee0_0000)).toBe(false);
    expect(isRemappable(0xfee0_f00c)).toBe(false);
  });

  it("the handle is address bits 19:5 with bit 2 as handle[15]", () => {
    expect(interruptIndex(remappable(0).address, 0)).toBe(0);
    expect(interruptIndex(remappable(5).address, 0)).toBe(5);
    expect(interruptIndex(remappable(0x7fff).address, 0)).toBe(0x7fff);
    expect(interruptIndex(remappable(0x8000).address, 0)).toBe(0x8000);
    expect(interruptIndex(remappable(0xffff).address, 0)).toBe(0xffff);
    // bits 1:0 are don't care
    expect(interruptIndex(remappable(9).address | 3, 0)).toBe(9);
  });

  it("with SHV the subhandle data[15:0] is added; without it the data is not looked at", () => {
    const shv = remappable(0x10, 3);
    expect(interruptIndex(shv.address, shv.data)).toBe(0x13);
    expect(interruptIndex(remappable(0x10).address, 3)).toBe(0x10);
    const wide = remappable(0xffff, 0xffff);
    expect(interruptIndex(wide.address, wide.data)).toBe(0x1fffe); // beyond any table: 21h
  });

  it("data bits 31:16 are reserved", () => {
    expect(requestReserved(0xffff)).toBe(false);
    expect(requestReserved(0x1_0000)).toBe(true);
    expect(requestReserved(0x8000_0000)).toBe(true);
  });
});

describe("the IRTE for remapped interrupts (VT-d §9.10)", () => {
  it("P = 0 is fault 22h whatever else it holds; a clean present entry passes", () => {
    expect(check(irte({ present: false }))).toBe(FaultReason.IrteNotPresent);
    expect(check(irte({ present: false, lo: 0xff00_0000n }))).toBe(FaultReason.IrteNotPresent);
    expect(check(irte())).toBe(0);
  });

  it("FPD is bit 1, read with P = 0 too", () => {
    expect(irteFaultProcessingDisable(dwords(irte({ present: false, fpd: true }))[0])).toBe(true);
    expect(irteFaultProcessingDisable(dwords(irte({ fpd: false }))[0])).toBe(false);
  });

  const reservedBits: [string, bigint, bigint][] = [
    ["lo bit 12", 1n << 12n, 0n], ["lo bit 14", 1n << 14n, 0n],
    ["lo bit 15 (IM, posted format without CAP.PI)", 1n << 15n, 0n],
    ["lo bit 24", 1n << 24n, 0n], ["lo bit 31", 1n << 31n, 0n],
    ["DST[7:0] in xAPIC mode (bit 32)", 1n << 32n, 0n], ["DST[7:0] (bit 39)", 1n << 39n, 0n],
    ["DST[31:16] in xAPIC mode (bit 48)", 1n << 48n, 0n], ["DST[31:16] (bit 63)", 1n << 63n, 0n],
    ["hi bit 20 (84)", 0n, 1n << 20n], ["hi bit 31 (95)", 0n, 1n << 31n], ["hi bit 63 (127)", 0n, 1n << 63n],
  ];
  for (const [name, lo, hi] of reservedBits) {
    it(`a present IRTE with ${name} set is fault 24h`, () => {
      expect(check(irte({ lo, hi }))).toBe(FaultReason.IrteReserved);
    });
  }

  it("bits that are not reserved: AVAIL 11:8, every vector, DST[15:8]", () => {
    expect(check(irte({ lo: 0xf00n }))).toBe(0);
    expect(check(irte({ vector: 0xff, apicId: 0xff }))).toBe(0);
  });

  it("delivery modes 3 and 6 and SVT = 11b are reserved encodings (24h); the others pass", () => {
    for (const dlm of [0, 1, 2, 4, 5, 7]) expect(check(irte({ dlm }))).toBe(0);
    expect(check(irte({ dlm: 3 }))).toBe(FaultReason.IrteReserved);
    expect(check(irte({ dlm: 6 }))).toBe(FaultReason.IrteReserved);
    expect(check(irte({ svt: 3 }))).toBe(FaultReason.IrteReserved);
  });

  it("the message: address 0xFEE00000 | DST[15:8] << 12 | RH << 3 | DM << 2; data vector | DLM << 8 | assert << 14 | TM << 15", () => {
    const [w0, w1] = dwords(irte({ vector: 0x5a, apicId: 0x3c, dm: 1, rh: 1, tm: 1, dlm: 1 }));
    expect(remappedAddress(w0, w1)).toBe(0xfee3_c00c);
    expect(remappedData(w0)).toBe(0x5a | (1 << 8) | (1 << 14) | (1 << 15));
    const [e0, e1] = dwords(irte({ vector: 0x21, apicId: 1 }));
    expect(remappedAddress(e0, e1)).toBe(0xfee0_1000);
    expect(remappedData(e0)).toBe(0x21 | (1 << 14));
  });
});

describe("source validation (SVT, SQ, SID)", () => {
  it("SVT 00: any requester", () => {
    expect(source(irte({ svt: 0, sid: 0x1234 }), 0xffff)).toBe(true);
  });

  it("SVT 01, SQ 00: all 16 bits compared", () => {
    const e = irte({ svt: 1, sq: 0, sid: 0x0120 });
    expect(source(e, 0x0120)).toBe(true);
    expect(source(e, 0x0121)).toBe(false);
    expect(source(e, 0x0124)).toBe(false);
    expect(source(e, 0x0220)).toBe(false);
  });

  it("SVT 01, SQ 01: function bit 2 ignored", () => {
    const e = irte({ svt: 1, sq: 1, sid: 0x0120 });
    expect(source(e, 0x0124)).toBe(true);
    expect(source(e, 0x0122)).toBe(false);
    expect(source(e, 0x0121)).toBe(false);
  });

  it("SVT 01, SQ 10: function bits 2:1 ignored", () => {
    const e = irte({ svt: 1, sq: 2, sid: 0x0120 });
    expect(source(e, 0x0126)).toBe(true);
    expect(source(e, 0x0122)).toBe(true);
    expect(source(e, 0x0121)).toBe(false);
    expect(source(e, 0x0128)).toBe(false);
  });

  it("SVT 01, SQ 11: function bits 2:0 ignored, device and bus still compared", () => {
    const e = irte({ svt: 1, sq: 3, sid: 0x0120 });
    for (let fn = 0; fn < 8; fn++) expect(source(e, 0x0120 | fn)).toBe(true);
    expect(source(e, 0x0128)).toBe(false);
    expect(source(e, 0x0020)).toBe(false);
  });

  it("SVT 10: the requester's bus within [SID[15:8], SID[7:0]] (start bus, end bus)", () => {
    const e = irte({ svt: 2, sid: 0x0305 }); // buses 3..5
    expect(source(e, 0x0200)).toBe(false);
    expect(source(e, 0x0300)).toBe(true);
    expect(source(e, 0x04ff)).toBe(true);
    expect(source(e, 0x0507)).toBe(true);
    expect(source(e, 0x0600)).toBe(false);
    // start above end: an empty range
    expect(source(irte({ svt: 2, sid: 0x0503 }), 0x0400)).toBe(false);
  });

  it("SVT 11 fails the check too (and the entry is reserved: 24h comes first)", () => {
    expect(source(irte({ svt: 3, sid: 0x20 }), 0x20)).toBe(false);
  });
});
