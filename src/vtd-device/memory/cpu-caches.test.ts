/**
 * ECAP.C = 0 with the platform reporting cache-line flushes (option `cacheLineFlushes`): table
 * stores reach the unit when the guest flushes their line, not before, and invalidations do not
 * help; the checker names the line to flush.
 */
import { describe, expect, it } from "vitest";
import { Gcmd, GSTS_PERSISTENT_MASK, IOTLB_OFFSET, Reg } from "../../spec/registers.ts";
import { PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { enableScalableQueued, scalableRig, wide } from "../../../test/support/scalable-notifier-rig.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";
import { GuestRam } from "./guest-memory.ts";
import { LineCopies, LINE_COPIES } from "./line-copies.ts";
import { MemoryAccess } from "./memory-access.ts";

const SID = 0x0020;
const IOVA = 0x4000_0000;

function translating(m: Machine): { tableRoot: number; leaf: number } {
  const tableRoot = m.tables.context(SID, { did: 1, aw: 1 });
  const leaf = m.tables.map(tableRoot, 3, IOVA, 0x20_0000, R | W);
  enableTranslation(m);
  return { tableRoot, leaf };
}

function output(m: Machine, iova = IOVA): bigint | number {
  const r = m.device.translateForTest(SID, BigInt(iova), false);
  return r.ok ? r.address : -r.reason;
}

function globalInvalidations(m: Machine): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
  m.device.writeRegister(IOTLB_OFFSET, 8, (1n << 63n) | (1n << 60n));
}

describe("CPU caches the unit does not snoop (ECAP.C = 0, cacheLineFlushes)", () => {
  it("exist only with the option and ECAP.C = 0; a bad value is named", () => {
    expect(machine().device.cpuCaches).toBeUndefined();
    expect(machine({ cacheLineFlushes: true }).device.cpuCaches).toBeDefined();
    expect(machine({ cacheLineFlushes: true, coherent: true }).device.cpuCaches).toBeUndefined();
    expect(() => machine({ cacheLineFlushes: "yes" as unknown as boolean })).toThrow(/cacheLineFlushes/);
  });

  it("a changed PTE reaches the unit when its line is flushed; invalidations alone leave the old one", () => {
    const m = machine({ cacheLineFlushes: true, checker: true });
    const { leaf } = translating(m);
    expect(output(m)).toBe(0x20_0000n);
    m.ram.write64(leaf, 0x30_0000n | R | W); // the driver's store, not flushed
    globalInvalidations(m);
    expect(output(m)).toBe(0x20_0000n); // the unit walked memory, which still holds the old PTE
    const report = m.device.checker!.reports.find((r) => r.kind === "unflushed-table-write");
    expect(report?.missing).toMatchObject({ action: "cache-line-flush", line: BigInt(leaf - (leaf % 64)) });
    expect(report?.cached).toMatchObject({ table: "paging", level: 1, value: 0x20_0000n | R | W });
    m.device.cacheLineFlushed(leaf + 3); // any byte of the line
    expect(m.device.cpuCaches!.tableLineFlushes).toBe(1);
    expect(output(m)).toBe(0x20_0000n); // the IOTLB still holds it: flushing is not invalidating
    globalInvalidations(m);
    expect(output(m)).toBe(0x30_0000n);
  });

  it("a present entry made from a not-present one the unit walked faults until flushed", () => {
    const m = machine({ cacheLineFlushes: true });
    const { tableRoot } = translating(m);
    const other = IOVA + 0x1000; // its PTE shares the line with IOVA's
    expect(output(m, other)).toBe(-FaultReason.ReadNotPermitted);
    const pte = m.tables.map(tableRoot, 3, other, 0x21_0000, R | W);
    expect(output(m, other)).toBe(-FaultReason.ReadNotPermitted);
    m.device.cacheLineFlushed(pte);
    expect(output(m, other)).toBe(0x21_0000n);
  });

  it("coherent units, units without the option, reset and other flushes see stores at once", () => {
    for (const options of [{ coherent: true, cacheLineFlushes: true }, {}]) {
      const m = machine(options);
      const { leaf } = translating(m);
      expect(output(m)).toBe(0x20_0000n);
      m.ram.write64(leaf, 0x30_0000n | R | W);
      globalInvalidations(m);
      expect(output(m)).toBe(0x30_0000n);
    }
    const m = machine({ cacheLineFlushes: true });
    const { leaf } = translating(m);
    expect(output(m)).toBe(0x20_0000n);
    m.ram.write64(leaf, 0x30_0000n | R | W);
    m.device.cacheLineFlushed(leaf + 64); // the next line: not this one
    for (const bad of [-1, NaN, 2 ** 60, "0" as unknown as number]) m.device.cacheLineFlushed(bad);
    globalInvalidations(m);
    expect(output(m)).toBe(0x20_0000n);
    m.device.reset();
    enableTranslation(m);
    expect(output(m)).toBe(0x30_0000n);
  });

  it("holds a bounded number of lines: a line evicted from its slot has reached memory", () => {
    const m = machine({ cacheLineFlushes: true });
    const { leaf } = translating(m);
    expect(output(m)).toBe(0x20_0000n);
    m.ram.write64(leaf, 0x30_0000n | R | W);
    const caches = m.device.cpuCaches!;
    // Another line in the same slot (LINE_COPIES lines apart) replaces the copy.
    caches.read32(leaf + LINE_COPIES * 64);
    globalInvalidations(m);
    expect(output(m)).toBe(0x30_0000n);
  });
});

describe("the unit's Accessed/Dirty updates under line copies (first stage, VT-d 5.10 §3.6.2)", () => {
  const FS_SID = 0x0030, X = 0x1000, Y = 0x2000;
  for (const options of [{ cacheLineFlushes: true }, { rwbf: true }]) {
    it(`never write back the copy over a newer guest store (${Object.keys(options)[0]})`, () => {
      const rig = scalableRig(options);
      const t = rig.tables;
      const dir = t.smContext(FS_SID, { ridPasid: 0 });
      const root = t.page();
      t.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, did: 1, firstStageRoot: root });
      const x = t.mapFirstStage(root, X, 0x90_0000, 0x6n); // Accessed clear
      t.mapFirstStage(root, Y, 0x91_0000, 0x26n); // Accessed set: using it writes nothing
      enableScalableQueued(rig);
      const bytes = new Uint8Array(4);
      expect(rig.device.dmaRead(FS_SID, Y, bytes).ok).toBe(true); // the unit now holds the leaf line
      rig.ram.write64(x, 0n); // the driver unmaps X; its store is not yet visible to the unit
      rig.device.dmaRead(FS_SID, X, bytes); // a request racing the unmap may still use the old entry
      expect(rig.ram.read64(x)).toBe(0n); // but the Accessed update must not bring the old entry back
      rig.device.cacheLineFlushed(x);
      rig.device.writeRegister(Reg.GCMD, 4, (rig.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK) | Gcmd.WBF);
      rig.submit(wide.pasidIotlbPage(1, 0, X));
      expect(rig.device.dmaRead(FS_SID, X, bytes).ok).toBe(false);
    });
  }
});

describe("line copies (line-copies.ts)", () => {
  it("never serve an address below 0 from a copy: an emptied slot's tag 0 is line -1's line + 1", () => {
    const ram = new GuestRam(1 << 20);
    const copies = new LineCopies(ram, new MemoryAccess(ram), Infinity, () => 0);
    const last = (LINE_COPIES - 1) * 64;
    ram.write32(last, 0x1234);
    expect(copies.read32(last)).toBe(0x1234); // a copy in the last slot
    expect(copies.dropLine(last)).toBe(true); // ended: tag 0, generation current
    expect(copies.read32(-64)).toBe(-1);
    expect(copies.copied(-60)).toBeUndefined();
    expect(copies.dropLine(-64)).toBe(false);
  });
});
