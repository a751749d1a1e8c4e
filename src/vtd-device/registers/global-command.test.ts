import { describe, expect, it } from "vitest";
import { Gcmd, Gsts, Reg } from "../../spec/registers.ts";
import { gsts, machine } from "../../../test/support/tables.ts";

describe("GCMD and GSTS", () => {
  it("SRTP latches RTADDR and sets RTPS; a later RTADDR write changes nothing until the next SRTP", () => {
    const m = machine({ awBits: 39 });
    m.device.writeRegister(Reg.RTADDR, 8, 0x10_0000n);
    expect(gsts(m) & Gsts.RTPS).toBe(0n);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
    expect(gsts(m)).toBe(Gsts.RTPS);
    expect(m.device.readRegister(Reg.GCMD, 4)).toBe(0n); // write-only
  });

  it("TE is persistent: TES follows it; the spec's update sequence (GSTS & 0x96FFFFFF | bit) works", () => {
    const m = machine();
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
    const persistent = (m.device.readRegister(Reg.GSTS, 4) & 0x96ff_ffffn);
    m.device.writeRegister(Reg.GCMD, 4, persistent | Gcmd.TE);
    expect(gsts(m)).toBe(Gsts.TES | Gsts.RTPS);
    m.device.writeRegister(Reg.GCMD, 4, (m.device.readRegister(Reg.GSTS, 4) & 0x96ff_ffffn) & ~Gcmd.TE);
    expect(gsts(m)).toBe(Gsts.RTPS);
  });

  it("a driver that copies GSTS unmasked re-issues SRTP, which relatches", () => {
    const m = machine();
    m.device.writeRegister(Reg.RTADDR, 8, 0x10_0000n);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
    const events: string[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_gcmd") events.push(e.command); });
    m.device.writeRegister(Reg.GCMD, 4, m.device.readRegister(Reg.GSTS, 4) | Gcmd.TE);
    expect(events).toEqual(["TE on", "SRTP"]);
  });

  it("WBF: counted with CAP.RWBF, WBFS never stays set; ignored without it", () => {
    const m = machine({ rwbf: true });
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.WBF);
    expect(gsts(m) & Gsts.WBFS).toBe(0n);
    expect(m.device.stats.writeBufferFlushes).toBe(1);
    const plain = machine();
    plain.device.writeRegister(Reg.GCMD, 4, Gcmd.WBF);
    expect(plain.device.stats.writeBufferFlushes).toBe(0);
  });

  it("advanced fault logging commands are ignored, and so are the interrupt remapping commands with interruptRemapping: false", () => {
    const m = machine({ interruptRemapping: false });
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.IRE | Gcmd.SIRTP | Gcmd.CFI | Gcmd.SFL | Gcmd.EAFL);
    expect(gsts(m)).toBe(0n);
  });

  it("QIE sets QIES; clearing it with an idle queue clears QIES and zeroes IQH", () => {
    const m = machine();
    m.device.writeRegister(Reg.IQA, 8, 0x20_0000n);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.QIE);
    expect(gsts(m)).toBe(Gsts.QIES);
    m.device.writeRegister(Reg.GCMD, 4, 0n);
    expect(gsts(m)).toBe(0n);
    expect(m.device.readRegister(Reg.IQH, 8)).toBe(0n);
  });

  it("PMEN is read-only zero without PLMR/PHMR; PRS reads 0 for a driver polling it", () => {
    const m = machine();
    m.device.writeRegister(Reg.PMEN, 4, 0x8000_0000n);
    expect(m.device.readRegister(Reg.PMEN, 4)).toBe(0n);
  });
});
