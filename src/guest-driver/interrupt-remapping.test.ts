/**
 * The driver's interrupt remapping on the real unit (in-process): Linux's order (QI, IRTA + SIRTP,
 * global IEC invalidation, IRE, CFI policy, then DMA remapping), IRTEs allocated for a device and
 * its remappable-format MSI remapped by the unit (data: vector with the assert bit 14), index-selective IEC invalidations after every
 * IRTE change, CM = 1 honoured, ECAP.C = 0 flushes.
 */
import { describe, expect, it } from "vitest";
import { FaultReason } from "../spec/fault-reasons.ts";
import { Gsts, Reg } from "../spec/registers.ts";
import type { TraceEvent } from "../vtd-device/trace.ts";
import { VtdDriver } from "./driver.ts";
import { VtdDriverError } from "./errors.ts";
import { InProcessPlatform, type InProcessOptions } from "./in-process-platform.ts";

const SID = 0x0020; // 00:04.0, in the DMAR scope
const OTHER_SID = 0x0028;

function platform(vtd: InProcessOptions["vtd"] = {}): InProcessPlatform {
  return new InProcessPlatform({ deviceScopes: [{ bus: 0, dev: 4, fn: 0 }, { bus: 0, dev: 5, fn: 0 }], vtd: { interruptRemapping: true, ...vtd } });
}

function sequence(p: InProcessPlatform): string[] {
  const log: string[] = [];
  p.device.trace.subscribe((e: TraceEvent) => {
    if (e.type === "vtd_gcmd") log.push(e.command);
    else if (e.type === "vtd_inv_iec") log.push(`iec ${e.granularity}`);
    else if (e.type === "vtd_inv") log.push(`${e.cache} ${e.granularity}`);
  });
  return log;
}

describe("interrupt remapping in the guest driver", () => {
  it("is set up in Linux's order: QI, SIRTP, global IEC invalidation, IRE, then DMA remapping", () => {
    const p = platform();
    const log = sequence(p);
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 } });
    expect(driver.interruptRemapping).toBe(true);
    const order = log.filter((l) => /^(QIE on|SIRTP|iec global|IRE on|CFI|SRTP|TE on)/.test(l));
    expect(order).toEqual(["QIE on", "SIRTP", "iec global", "IRE on", "SRTP", "TE on"]);
    const gsts = p.device.mmioRead(Reg.GSTS, 4);
    expect(gsts & Number(Gsts.IRES)).not.toBe(0);
    expect(gsts & Number(Gsts.CFIS)).toBe(0); // compatibility format blocked
    expect(p.device.readRegister(Reg.IRTA, 8)).toBe(BigInt(driver.interruptTableAddress!) | 7n);
  });

  it("allocates an IRTE whose remappable-format MSI the unit delivers to the chosen vector and CPU", () => {
    const p = platform();
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 } });
    const irq = driver.allocateInterrupt(SID, { vector: 0x41, apicId: 2 });
    expect((irq.address & 0xfff0_0000) >>> 0).toBe(0xfee0_0000);
    expect(irq.address & 0x18).toBe(0x18); // remappable format, SHV
    expect((irq.address >>> 5) & 0x7fff).toBe(irq.index);
    expect(p.device.interruptRequest(SID, BigInt(irq.address), irq.data)).toEqual({ ok: true, address: 0xfee0_2000n, data: 0x4041 });
    // Source validation: another requester id is refused (26h).
    expect(p.device.interruptRequest(OTHER_SID, BigInt(irq.address), irq.data)).toEqual({ ok: false, reason: FaultReason.SourceIdVerificationFailed });
    // Compatibility format blocked (25h).
    expect(p.device.interruptRequest(SID, 0xfee0_0000n, 0x30)).toMatchObject({ ok: false, reason: FaultReason.CompatibilityInterruptBlocked });
    expect(driver.counters.interruptEntryInvalidations).toEqual({ global: 1, index: 1 });
  });

  it("invalidates the entry's IEC slot after a retarget and a free, so the unit uses the new entry at once", () => {
    const p = platform();
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 } });
    const irq = driver.allocateInterrupt(SID, { vector: 0x41 });
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toMatchObject({ ok: true, data: 0x4041 }); // now cached
    driver.retargetInterrupt(irq, { vector: 0x52, apicId: 1 });
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toEqual({ ok: true, address: 0xfee0_1000n, data: 0x4052 });
    driver.freeInterrupt(irq);
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toMatchObject({ ok: false, reason: FaultReason.IrteNotPresent });
    expect(driver.counters.interruptEntryInvalidations.index).toBe(3);
    expect(() => driver.freeInterrupt(irq)).toThrow(VtdDriverError);
  });

  it("CM = 1: the entry made present is invalidated, so a not-present IRTE the unit cached is not used", () => {
    const p = platform({ cachingMode: true });
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 } });
    // A request before the entry exists: the unit caches the not-present IRTE (CM = 1).
    const handle = 0; // the first index the driver hands out
    const early = (0xfee0_0018 | (handle << 5)) >>> 0;
    expect(p.device.interruptRequest(SID, BigInt(early), 0)).toMatchObject({ ok: false, reason: FaultReason.IrteNotPresent });
    const irq = driver.allocateInterrupt(SID, { vector: 0x44 });
    expect(irq.index).toBe(handle);
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toMatchObject({ ok: true, data: 0x4044 });
  });

  it("without the IEC invalidation (test-only) under CM = 1 the cached not-present entry keeps faulting", () => {
    const p = platform({ cachingMode: true });
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 }, testOnly: { suppress: ["iec-invalidation"] } });
    expect(p.device.interruptRequest(SID, 0xfee0_0018n, 0)).toMatchObject({ ok: false, reason: FaultReason.IrteNotPresent });
    const irq = driver.allocateInterrupt(SID, { vector: 0x44 });
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toMatchObject({ ok: false, reason: FaultReason.IrteNotPresent });
  });

  it("ECAP.C = 0: every IRTE store is flushed from the CPU cache before the unit reads it", () => {
    const p = platform({ coherent: false });
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 7 } });
    const irq = driver.allocateInterrupt(SID, { vector: 0x41 });
    const entry = driver.interruptTableAddress! + 16 * irq.index;
    expect(p.cache.dirtyLines().filter((line) => line <= entry && entry < line + 64)).toEqual([]);
    expect(p.device.interruptRequest(SID, BigInt(irq.address), 0)).toMatchObject({ ok: true });
  });

  it("compatibility format allowed on request (CFI), and left off when the driver is told so or the unit has no IR", () => {
    const p = platform();
    VtdDriver.start(p, { interruptRemapping: { sizeOrder: 0, compatibilityFormat: true } });
    expect(p.device.mmioRead(Reg.GSTS, 4) & Number(Gsts.CFIS)).not.toBe(0);
    expect(p.device.interruptRequest(SID, 0xfee0_0000n, 0x30)).toMatchObject({ ok: true });

    const off = platform();
    const driver = VtdDriver.start(off, { interruptRemapping: false });
    expect(driver.interruptRemapping).toBe(false);
    expect(off.device.mmioRead(Reg.GSTS, 4) & Number(Gsts.IRES)).toBe(0);
    expect(() => driver.allocateInterrupt(SID, { vector: 0x41 })).toThrow(/interrupt remapping is off/);

    const none = platform({ interruptRemapping: false });
    expect(VtdDriver.start(none).interruptRemapping).toBe(false);
  });

  it("refuses bad vectors, APIC ids and source-ids with a clear error, and a full table", () => {
    const p = platform();
    const driver = VtdDriver.start(p, { interruptRemapping: { sizeOrder: 0 } });
    expect(() => driver.allocateInterrupt(SID, { vector: 3 })).toThrow(/vector 3/);
    expect(() => driver.allocateInterrupt(SID, { vector: 0x40, apicId: 300 })).toThrow(/APIC id 300/);
    expect(() => driver.allocateInterrupt(-1, { vector: 0x40 })).toThrow(/source-id -1/);
    driver.allocateInterrupt(SID, { vector: 0x40 });
    driver.allocateInterrupt(SID, { vector: 0x41 });
    expect(() => driver.allocateInterrupt(SID, { vector: 0x42 })).toThrow(/all 2 interrupt remapping table entries/);
    expect(() => VtdDriver.start(platform(), { interruptRemapping: { sizeOrder: 16 } })).toThrow(/sizeOrder 16/);
  });
});
