/**
 * Hardware state the spec lets a unit keep: CAP.ESRTPS (SRTP invalidating or not) and the write
 * buffer of CAP.RWBF = 1 (table stores invisible to the unit until GCMD.WBF, an invalidation,
 * SRTP/TE or the drain time), with the checker's missing-write-buffer-flush report.
 */
import { describe, expect, it } from "vitest";
import { Cap, Gcmd, IOTLB_OFFSET, Reg } from "../../spec/registers.ts";
import { getField } from "../../spec/field.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";
import { WRITE_BUFFER_LINES } from "./write-buffer.ts";

const SID = 0x0020;
const IOVA = 0x4000_0000;

/** A 3-level domain for SID with IOVA mapped to `output`; translation on. */
function translating(m: Machine, output = 0x20_0000): { tableRoot: number; leaf: number } {
  const tableRoot = m.tables.context(SID, { did: 1, aw: 1 });
  const leaf = m.tables.map(tableRoot, 3, IOVA, output, R | W);
  enableTranslation(m);
  return { tableRoot, leaf };
}

function read(m: Machine, iova = IOVA): { ok: boolean; reason?: number } {
  const r = m.device.dmaRead(SID, iova, new Uint8Array(8));
  return r.ok ? { ok: true } : { ok: false, reason: r.reason };
}

function globalInvalidations(m: Machine): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
  m.device.writeRegister(IOTLB_OFFSET, 8, (1n << 63n) | (1n << 60n));
}

describe("CAP.ESRTPS", () => {
  it("is 0 by default (QEMU 10.0), 1 with the option", () => {
    expect(getField(machine().device.readRegister(Reg.CAP, 8), Cap.ESRTPS)).toBe(0n);
    expect(getField(machine({ esrtps: true }).device.readRegister(Reg.CAP, 8), Cap.ESRTPS)).toBe(1n);
    expect(() => machine({ esrtps: 1 as unknown as boolean })).toThrow(/option esrtps/);
  });

  it("ESRTPS = 0: SRTP latches the new root, the cached context entry and translation survive until invalidated", () => {
    const m = machine();
    translating(m, 0x20_0000);
    expect(m.device.translateForTest(SID, BigInt(IOVA), false)).toMatchObject({ ok: true, address: 0x20_0000n });
    // A second root table that maps the device elsewhere.
    const root2 = m.tables.page();
    const context2 = m.tables.page();
    const domain2 = m.tables.page();
    m.ram.write64(root2, BigInt(context2) | 1n);
    m.ram.write64(context2 + (SID & 0xff) * 16 + 8, 1n | (2n << 8n));
    m.ram.write64(context2 + (SID & 0xff) * 16, BigInt(domain2) | 1n);
    m.tables.map(domain2, 3, IOVA, 0x30_0000, R | W);
    m.device.writeRegister(Reg.RTADDR, 8, BigInt(root2));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    expect(m.device.translateForTest(SID, BigInt(IOVA), false)).toMatchObject({ ok: true, address: 0x20_0000n }); // stale
    globalInvalidations(m);
    expect(m.device.translateForTest(SID, BigInt(IOVA), false)).toMatchObject({ ok: true, address: 0x30_0000n });
  });

  it("ESRTPS = 1: SRTP invalidates the context cache and the IOTLB itself", () => {
    const m = machine({ esrtps: true });
    const { leaf } = translating(m, 0x20_0000);
    expect(m.device.translateForTest(SID, BigInt(IOVA), false)).toMatchObject({ ok: true, address: 0x20_0000n });
    m.ram.write64(leaf, 0x30_0000n | R | W);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    expect(m.device.translateForTest(SID, BigInt(IOVA), false)).toMatchObject({ ok: true, address: 0x30_0000n });
  });
});

describe("the write buffer (CAP.RWBF = 1)", () => {
  it("exists only with RWBF", () => {
    expect(machine().device.writeBuffer).toBeUndefined();
    expect(machine({ rwbf: true }).device.writeBuffer).toBeDefined();
    expect(() => machine({ rwbf: true, writeBufferDrainMs: -1 })).toThrow(/writeBufferDrainMs/);
  });

  it("a store to an entry the unit walked stays invisible until GCMD.WBF", () => {
    const m = machine({ rwbf: true, checker: true });
    const { tableRoot } = translating(m);
    const other = IOVA + 0x1000; // its PTE shares the line with IOVA's
    expect(read(m, other)).toEqual({ ok: false, reason: FaultReason.ReadNotPermitted });
    m.tables.map(tableRoot, 3, other, 0x21_0000, R | W);
    expect(read(m, other).ok).toBe(false); // the buffered not-present PTE
    expect(m.device.checker!.reports.map((r) => r.kind)).toEqual(["missing-write-buffer-flush"]);
    const report = m.device.checker!.reports[0]!;
    expect(report.missing).toMatchObject({ action: "write-buffer-flush" });
    expect(report.cached).toMatchObject({ structure: "table-entry", table: "paging", level: 1, value: 0n });
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.WBF);
    expect(read(m, other)).toEqual({ ok: true });
    expect(m.device.writeBuffer!.flushes).toBeGreaterThan(0);
  });

  it("an invalidation flushes it too (the unit flushes before completing one), and so does the drain time", () => {
    const m = machine({ rwbf: true, writeBufferDrainMs: 5 });
    const { tableRoot } = translating(m);
    const other = IOVA + 0x1000;
    expect(read(m, other).ok).toBe(false);
    m.tables.map(tableRoot, 3, other, 0x21_0000, R | W);
    expect(read(m, other).ok).toBe(false);
    globalInvalidations(m);
    expect(read(m, other).ok).toBe(true);

    const third = IOVA + 0x2000;
    expect(read(m, third).ok).toBe(false);
    m.tables.map(tableRoot, 3, third, 0x22_0000, R | W);
    expect(read(m, third).ok).toBe(false);
    m.device.advanceTime(6);
    expect(read(m, third).ok).toBe(true);
  });

  it("a store to a line the unit never read is seen at once; the buffer holds a bounded number of lines", () => {
    const m = machine({ rwbf: true, checker: true });
    const { tableRoot } = translating(m);
    const far = IOVA + 0x10_0000; // another PTE table page, never walked
    m.tables.map(tableRoot, 3, far, 0x23_0000, R | W);
    expect(read(m, far).ok).toBe(true);
    expect(m.device.checker!.reports).toEqual([]);
    expect(WRITE_BUFFER_LINES).toBe(1024);
  });
});
