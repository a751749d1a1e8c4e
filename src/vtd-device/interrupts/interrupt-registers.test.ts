import { describe, expect, it } from "vitest";
import { Ecap, Gcmd, Gsts, Reg } from "../../spec/registers.ts";
import { getField } from "../../spec/field.ts";
import { command, compatibility, iec, irMachine, irte, remappable, TABLE } from "../../../test/support/interrupt-remapping.ts";
import { gsts, machine } from "../../../test/support/tables.ts";
import { Queue } from "../../../test/support/queue.ts";
import type { TraceEvent } from "../trace.ts";

const EDU = 0x20;

describe("interrupt remapping off (interruptRemapping: false, QEMU's intremap=off)", () => {
  it("ECAP is QEMU's intremap=off value; IRE, SIRTP and CFI are ignored; IRTA keeps QEMU's write mask", () => {
    const m = machine({ awBits: 39, interruptRemapping: false });
    expect(m.device.readRegister(Reg.ECAP, 8)).toBe(0xf42n);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.IRE | Gcmd.SIRTP | Gcmd.CFI);
    expect(gsts(m)).toBe(0n);
    m.device.writeRegister(Reg.IRTA, 8, 0xffff_ffff_ffff_ffffn);
    expect(m.device.readRegister(Reg.IRTA, 8)).toBe(0xffff_ffff_ffff_f80fn);
  });

  it("every interrupt request passes unchanged, both formats", () => {
    const m = machine();
    const r = remappable(3, 1);
    expect(m.device.interruptRequest(EDU, BigInt(r.address), r.data)).toEqual({ ok: true, address: BigInt(r.address), data: r.data });
    expect(m.device.interruptRequest(EDU, 0xfee0_1000n, 0x4041)).toEqual({ ok: true, address: 0xfee0_1000n, data: 0x4041 });
    expect(m.device.stats.interruptsPassedThrough).toBe(2);
  });
});

describe("interrupt remapping registers (option interruptRemapping)", () => {
  it("ECAP.IR = 1, MHMV = 15, EIM = 0: QEMU's intremap=on value for 39 bits", () => {
    const m = machine({ awBits: 39, interruptRemapping: true });
    const ecap = m.device.readRegister(Reg.ECAP, 8);
    expect(ecap).toBe(0xf0_0f4an);
    expect(getField(ecap, Ecap.IR)).toBe(1n);
    expect(getField(ecap, Ecap.EIM)).toBe(0n);
    expect(getField(ecap, Ecap.QI)).toBe(1n);
  });

  it("IRTA: base and S read back; EIME (RsvdZ without EIM) and bits 10:4 read 0", () => {
    const m = machine({ interruptRemapping: true });
    m.device.writeRegister(Reg.IRTA, 8, 0xffff_ffff_ffff_ffffn);
    expect(m.device.readRegister(Reg.IRTA, 8)).toBe(0xffff_ffff_ffff_f00fn);
    m.device.writeRegister(Reg.IRTA, 8, 0x30_0807n);
    expect(m.device.readRegister(Reg.IRTA, 8)).toBe(0x30_0007n);
  });

  it("SIRTP sets IRTPS (one-shot: GCMD reads 0, IRTPS stays); IRE sets IRES; CFI sets CFIS; clearing them clears the status", () => {
    const m = machine({ interruptRemapping: true });
    new Queue(m).enable();
    m.device.writeRegister(Reg.IRTA, 8, BigInt(TABLE) | 3n);
    command(m, Gcmd.SIRTP);
    expect(gsts(m)).toBe(Gsts.QIES | Gsts.IRTPS);
    command(m, Gcmd.IRE);
    expect(gsts(m)).toBe(Gsts.QIES | Gsts.IRTPS | Gsts.IRES);
    command(m, Gcmd.CFI);
    expect(gsts(m)).toBe(Gsts.QIES | Gsts.IRTPS | Gsts.IRES | Gsts.CFIS);
    expect(m.device.readRegister(Reg.GCMD, 4)).toBe(0n);
    command(m, Gcmd.CFI, false);
    command(m, Gcmd.IRE, false);
    expect(gsts(m)).toBe(Gsts.QIES | Gsts.IRTPS);
  });

  it("IRE with queued invalidation off is honoured (as QEMU does) and the trace says the cache cannot be invalidated", () => {
    const m = machine({ interruptRemapping: true });
    const commands: string[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_gcmd") commands.push(e.command); });
    command(m, Gcmd.SIRTP);
    command(m, Gcmd.IRE);
    expect(gsts(m)).toBe(Gsts.IRTPS | Gsts.IRES);
    expect(commands).toEqual(["SIRTP", "IRE on (QIES = 0: the interrupt entry cache cannot be invalidated)"]);
  });

  it("IRTA acts only at SIRTP: a later IRTA write changes nothing until the next SIRTP (and its IEC invalidation)", () => {
    const m = irMachine();
    m.writeIrte(1, irte({ vector: 0x31, apicId: 1 }));
    const other = 0x40_0000;
    m.ram.write64(other + 16, irte({ vector: 0x32, apicId: 2 })[0]);
    m.device.writeRegister(Reg.IRTA, 8, BigInt(other) | 7n);
    expect(m.send(EDU, remappable(1))).toEqual({ ok: true, address: 0xfee0_1000n, data: 0x4031 });
    command(m, Gcmd.SIRTP);
    // CAP.ESIRTPS = 0: SIRTP leaves the interrupt entry cache alone; software invalidates it.
    expect(m.send(EDU, remappable(1))).toEqual({ ok: true, address: 0xfee0_1000n, data: 0x4031 });
    m.queue.submit(iec.global());
    expect(m.send(EDU, remappable(1))).toEqual({ ok: true, address: 0xfee0_2000n, data: 0x4032 });
  });

  it("S gives 2^(S+1) entries: the last index remaps, the next one is fault 21h", () => {
    for (const s of [0, 3, 15]) {
      const m = irMachine({}, s);
      const last = 2 ** (s + 1) - 1;
      m.writeIrte(last, irte({ vector: 0x50 }));
      expect(m.send(EDU, remappable(last)).ok).toBe(true);
      if (last + 1 <= 0xffff) expect(m.send(EDU, remappable(last + 1))).toEqual({ ok: false, reason: 0x21 });
    }
  });

  it("IRES = 0 again: requests pass unchanged; a driver copying GSTS unmasked re-issues SIRTP harmlessly", () => {
    const m = irMachine();
    m.writeIrte(2, irte({ vector: 0x44 }));
    m.device.writeRegister(Reg.GCMD, 4, m.device.readRegister(Reg.GSTS, 4)); // IRTPS copied: SIRTP again
    expect(gsts(m) & (Gsts.IRES | Gsts.IRTPS)).toBe(Gsts.IRES | Gsts.IRTPS);
    expect(m.send(EDU, remappable(2)).ok).toBe(true);
    command(m, Gcmd.IRE, false);
    const r = remappable(2);
    expect(m.send(EDU, r)).toEqual({ ok: true, address: BigInt(r.address), data: 0 });
  });

  it("reset: IRES, IRTPS, CFIS and the latched table go, and so does the entry cache", () => {
    const m = irMachine({ cachingMode: true });
    command(m, Gcmd.CFI);
    m.writeIrte(4, irte({ present: false }));
    expect(m.send(EDU, remappable(4)).ok).toBe(false); // a negative entry is cached
    m.device.reset();
    expect(gsts(m)).toBe(0n);
    const r = compatibility(1, 0x30);
    expect(m.send(EDU, r)).toEqual({ ok: true, address: BigInt(r.address), data: r.data });
    new Queue(m).enable();
    m.device.writeRegister(Reg.IRTA, 8, BigInt(TABLE) | 7n);
    command(m, Gcmd.SIRTP);
    command(m, Gcmd.IRE);
    m.writeIrte(4, irte({ vector: 0x61 }));
    expect(m.send(EDU, remappable(4)).ok).toBe(true); // no stale negative entry survived the reset
  });

  it("advanced fault logging stays ignored with interrupt remapping on", () => {
    const m = machine({ interruptRemapping: true });
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.SFL | Gcmd.EAFL);
    expect(gsts(m)).toBe(0n);
  });

  it("GCMD traces each interrupt-remapping command", () => {
    const m = machine({ interruptRemapping: true });
    const events: TraceEvent[] = [];
    m.device.trace.subscribe((e) => events.push(e));
    new Queue(m).enable();
    command(m, Gcmd.SIRTP);
    command(m, Gcmd.IRE);
    command(m, Gcmd.CFI);
    command(m, Gcmd.IRE, false);
    const commands = events.flatMap((e) => (e.type === "vtd_gcmd" ? [e.command] : []));
    expect(commands).toEqual(["QIE on", "SIRTP", "IRE on", "CFI on", "IRE off"]);
  });
});
