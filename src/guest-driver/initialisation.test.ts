/**
 * Discovery (DMAR, CAP/ECAP, rejection of absent or unusable units) and initialisation in Linux's
 * order, with the spec's GCMD update sequence and the fallbacks (register-based invalidation,
 * ESRTPS, 32-bit register access).
 */
import { describe, expect, it } from "vitest";
import { Cap, Ecap, Gcmd, Gsts, GSTS_PERSISTENT_MASK, Reg } from "../spec/registers.ts";
import type { TraceEvent } from "../vtd-device/trace.ts";
import { VtdDriver } from "./driver.ts";
import { VtdDriverError } from "./errors.ts";
import { parseDmar } from "./discovery.ts";
import { InProcessPlatform, type InProcessOptions } from "./in-process-platform.ts";
import { deviceRead, SID_A, testMachine } from "../../test/support/driver-scenarios.ts";

const bit = (f: { shift: number }) => 1n << BigInt(f.shift);
const REGISTER_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Reg).map(([name, offset]) => [offset, name]));

function platform(options: InProcessOptions = {}): InProcessPlatform {
  return new InProcessPlatform({ deviceScopes: [{ bus: 0, dev: 4, fn: 0 }], ...options });
}

/** What the unit saw, in order: register writes by name, GCMD commands, invalidations. */
function record(p: InProcessPlatform): string[] {
  const log: string[] = [];
  p.device.trace.subscribe((e: TraceEvent) => {
    if (e.type === "vtd_reg_write") log.push(`write ${REGISTER_NAMES[e.offset] ?? (e.offset === 0xf8 ? "IOTLB" : e.offset === 0xf0 ? "IVA" : e.offset.toString(16))}`);
    else if (e.type === "vtd_gcmd") log.push(`gcmd ${e.command}`);
    else if (e.type === "vtd_inv") log.push(`inv ${e.cache} ${e.granularity} (${e.source})`);
  });
  return log;
}

describe("discovery", () => {
  it("finds the unit through the platform's DMAR table and decodes CAP/ECAP", () => {
    const p = platform({ vtd: { cachingMode: true, awBits: 39 } });
    const dmar = parseDmar(p.acpiTable("DMAR")!);
    expect(dmar.units).toHaveLength(1);
    expect(dmar.units[0]).toMatchObject({ registerBase: 0xfed9_0000, includePciAll: false, scopes: [{ sid: SID_A }] });
    const driver = VtdDriver.create(p);
    expect(driver.regs.base).toBe(0xfed9_0000);
    expect(driver.caps).toMatchObject({ cachingMode: true, sagaw: 0x2, mgawBits: 39, superpage2M: true, superpage1G: true, pageSelective: true, mamv: 18, queuedInvalidation: true, iotlbOffset: 0xf8, faultRecordOffset: 0x220 });
  });

  it("a base where no unit answers (all-ones) is rejected", () => {
    expect(() => VtdDriver.create(platform(), { base: 0xfed0_0000 })).toThrow(/VT-d unit at 0xfed00000: registers read all-ones/);
  });

  it("a unit with SAGAW 0 is rejected", () => {
    const p = platform({ readFilter: (offset, size, value) => (offset === Reg.CAP && size === 8 ? value & ~(0x1fn << BigInt(Cap.SAGAW.shift)) : value) });
    let error: unknown;
    try {
      VtdDriver.create(p);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VtdDriverError);
    expect((error as VtdDriverError).code).toBe("unit-rejected");
    expect((error as Error).message).toMatch(/CAP\.SAGAW is 0, no supported address width/);
  });

  it("no base and no DMAR table: a clear error", () => {
    const p = platform();
    const bare = { memory: p.memory, mmio: p.mmio, allocator: p.allocator, cache: p.cache, interrupts: p.interrupts, clock: p.clock };
    expect(() => VtdDriver.create(bare)).toThrow(/no register base given and the platform has no DMAR table/);
  });

  it("a damaged DMAR table is refused", () => {
    const bytes = platform().acpiTable("DMAR")!;
    bytes[40] = (bytes[40]! + 1) & 0xff;
    expect(() => parseDmar(bytes)).toThrow(/checksum/);
    expect(() => parseDmar(new TextEncoder().encode("APIC".padEnd(60, "\0")))).toThrow(/signature "APIC"/);
  });

  it("devices outside the DMAR device scope are unknown to the unit", () => {
    const { driver } = testMachine();
    const d = driver.createDomain();
    expect(() => driver.attach(0x30, d)).toThrow(/device 00:06\.0 is not behind this unit/);
  });
});

describe("initialisation", () => {
  it("follows Linux's order: QI, interrupt remapping, root table + SRTP, global invalidations, fault interrupt, then TE", () => {
    const p = platform();
    const log = record(p);
    VtdDriver.create(p).initialise().enableTranslation();
    const key = log.filter((l) => /gcmd|inv |FEDATA|FECTL|IECTL|RTADDR|IQA/.test(l));
    expect(key).toEqual([
      "write IQA", "gcmd QIE on",
      "gcmd SIRTP", "gcmd IRE on",
      "write RTADDR", "gcmd SRTP",
      "inv context global (queue)", "inv iotlb global (queue)",
      "write FEDATA", "write FECTL",
      "write IECTL",
      "gcmd TE on",
    ]);
  });

  it("every GCMD write is (GSTS & 0x96FFFFFF) with exactly one bit changed", () => {
    const p = platform({ vtd: { rwbf: true } });
    const writes: { status: bigint; command: bigint }[] = [];
    p.device.trace.subscribe((e) => {
      if (e.type === "vtd_reg_write" && e.offset === Reg.GCMD) writes.push({ status: p.device.readRegister(Reg.GSTS, 4), command: e.value });
    });
    const driver = VtdDriver.start(p);
    driver.attach(SID_A, driver.createDomain());
    driver.disableTranslation();
    expect(writes.length).toBe(8); // QIE, SIRTP, IRE, SRTP, WBF (TE), TE, WBF (attach), TE off
    for (const { status, command } of writes) {
      const changed = (status & GSTS_PERSISTENT_MASK) ^ command;
      expect(changed !== 0n && (changed & (changed - 1n)) === 0n).toBe(true);
    }
    const q = Gcmd.QIE, qi = Gcmd.QIE | Gcmd.IRE;
    expect(writes.map((w) => w.command & (Gcmd.TE | Gcmd.QIE | Gcmd.SRTP | Gcmd.WBF | Gcmd.IRE | Gcmd.SIRTP))).toEqual([
      q, q | Gcmd.SIRTP, qi, qi | Gcmd.SRTP, qi | Gcmd.WBF, qi | Gcmd.TE, qi | Gcmd.TE | Gcmd.WBF, qi,
    ]);
    expect(p.device.readRegister(Reg.GSTS, 4) & Gsts.TES).toBe(0n);
  });

  it("CAP.ESRTPS: SRTP invalidates by itself, so no global invalidations follow it", () => {
    const p = platform({ readFilter: (o, s, v) => (o === Reg.CAP && s === 8 ? v | bit(Cap.ESRTPS) : v) });
    const log = record(p);
    VtdDriver.start(p);
    expect(log.filter((l) => l.startsWith("inv"))).toEqual([]);
  });

  it("ECAP.QI = 0: register-based invalidation (CCMD, IOTLB registers), and DMA works under CM = 1", () => {
    const p = platform({ vtd: { cachingMode: true }, readFilter: (o, s, v) => (o === Reg.ECAP && s === 8 ? v & ~bit(Ecap.QI) : v) });
    const log = record(p);
    const driver = VtdDriver.start(p);
    expect(driver.queuedInvalidation).toBe(false);
    expect(driver.queueFallback).toBe("ECAP.QI = 0");
    const d = driver.createDomain();
    driver.attach(SID_A, d);
    driver.map(d, 0x1000_0000, 0x40_0000, 4096, "r");
    expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(true);
    driver.unmap(d, 0x1000_0000, 4096);
    expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(false);
    expect(log.filter((l) => l.startsWith("inv"))).toEqual([
      "inv context global (register)", "inv iotlb global (register)",
      "inv context device (register)", "inv iotlb domain (register)",
      "inv iotlb page (register)", "inv iotlb page (register)",
    ]);
    expect(log).not.toContain("write IQA");
    expect(driver.counters.registerHandshakes).toBe(6);
  });

  it("QIES never sets: the queue is given up (QIE cleared) and registers are used", () => {
    const p = platform({ readFilter: (o, s, v) => (o === Reg.GSTS ? v & ~Gsts.QIES : v) });
    const driver = VtdDriver.create(p, { registerTimeoutMs: 5 }).initialise().enableTranslation();
    expect(driver.queuedInvalidation).toBe(false);
    expect(driver.queueFallback).toMatch(/QIES did not set/);
    const d = driver.createDomain();
    driver.attach(SID_A, d);
    driver.map(d, 0x1000_0000, 0x40_0000, 4096, "r");
    expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(true);
    driver.unmap(d, 0x1000_0000, 4096);
    expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(false);
  });

  it("a queue size beyond IQA.QS (0..7) is refused naming queueSizeOrder; 7 is taken, in both descriptor widths", () => {
    for (const bad of [-1, 1.5, 8]) {
      expect(() => testMachine({}, { queueSizeOrder: bad })).toThrow(new RegExp(`queueSizeOrder ${bad}: expected an integer 0\\.\\.7 \\(IQA\\.QS\\)`));
    }
    for (const scalableMode of [false, true]) {
      const m = testMachine({ scalableMode, firstStage: scalableMode, secondStage: scalableMode }, { queueSizeOrder: 7, scalableMode });
      expect(Number(m.platform.device.readRegister(Reg.IQA, 8) & 7n)).toBe(7);
    }
  });

  it("a 32-bit platform: 64-bit registers written as two dwords, low first; everything works", () => {
    for (const registerInvalidation of [false, true]) {
      const p = platform({ registerWidth: 32, vtd: { cachingMode: true } });
      const sizes = new Set<number>();
      const order: number[] = [];
      p.device.trace.subscribe((e) => {
        if (e.type === "vtd_reg_write") {
          sizes.add(e.size);
          if (e.offset === Reg.RTADDR || e.offset === Reg.RTADDR + 4) order.push(e.offset);
        }
      });
      const driver = VtdDriver.start(p, { registerInvalidation });
      const d = driver.createDomain();
      driver.attach(SID_A, d);
      driver.map(d, 0x1000_0000, 0x40_0000, 4096, "r");
      expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(true);
      driver.unmap(d, 0x1000_0000, 4096);
      expect(deviceRead(p, SID_A, 0x1000_0000).ok).toBe(false);
      expect([...sizes]).toEqual([4]);
      expect(order).toEqual([Reg.RTADDR, Reg.RTADDR + 4]);
    }
  });

  it("the fault interrupt is programmed and unmasked; old faults are cleared at initialisation", () => {
    const p = platform();
    p.device.writeRegister(Reg.GCMD, 4, Gcmd.TE); // an earlier owner left translation on with no tables: a fault
    p.device.dmaRead(SID_A, 0, new Uint8Array(4));
    expect(p.device.readRegister(Reg.FSTS, 4)).not.toBe(0n);
    p.device.writeRegister(Reg.GCMD, 4, 0n);
    const faults: number[] = [];
    VtdDriver.start(p, { onFault: (f) => faults.push(f.reason) });
    expect(faults).toEqual([1]); // root entry not present, reported and cleared
    expect(p.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(p.device.readRegister(Reg.FECTL, 4)).toBe(0n);
    expect(p.device.readRegister(Reg.FEDATA, 4)).not.toBe(0n);
  });
});
