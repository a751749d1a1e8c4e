/**
 * The checker in scalable mode on a unit whose table reads lag the guest's stores (ECAP.C = 0 with
 * cacheLineFlushes, CAP.RWBF = 1): a store the unit does not see yet is named as the flush it
 * needs, not as an invalidation the guest already made (an invalidation would not help: the unit
 * walks the same stale line again).
 */
import { describe, expect, it } from "vitest";
import type { DriverBugReport } from "../index.ts";
import { Gcmd, GSTS_PERSISTENT_MASK, Reg } from "../../spec/registers.ts";
import { PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { R, W } from "../../../test/support/tables.ts";
import { enableScalableQueued, scalableRig, wide } from "../../../test/support/scalable-notifier-rig.ts";

const SID = 0x0038, DID = 3, IOVA = 0x5000, DATA = 0x90_0000;

describe("scalable mode: a table store the unit does not see yet (line copies)", () => {
  it("cacheLineFlushes: a second-stage PTE made present and invalidated (CM = 1) but not flushed is unflushed-table-write, not a missing invalidation", () => {
    const reports: DriverBugReport[] = [];
    const rig = scalableRig({ cacheLineFlushes: true, checker: { onReport: (r: DriverBugReport) => reports.push(r) } });
    const t = rig.tables;
    const dir = t.smContext(SID, { ridPasid: 0 });
    const ss = t.page();
    t.pasidEntry(dir, 0, { pgtt: Pgtt.SecondStage, aw: 2, did: DID, secondStageRoot: ss });
    t.map(ss, 4, IOVA + 0x1000, DATA, R | W); // builds the tables; IOVA's leaf stays not present
    enableScalableQueued(rig);
    const bytes = new Uint8Array(4);
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(false); // the unit read the leaf's line
    const leaf = t.map(ss, 4, IOVA, DATA, R | W); // the store, not flushed
    rig.submit(wide.iotlbPage(DID, IOVA)); // the invalidation CM = 1 asks for: made
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(false); // the unit still sees the old line
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(false);
    expect(reports.filter((r) => r.kind === "missing-cm-invalidation" || r.kind === "stale-cache")).toEqual([]);
    const flush = reports.find((r) => r.kind === "unflushed-table-write");
    expect(flush?.missing).toMatchObject({ action: "cache-line-flush", line: BigInt(leaf - (leaf % 64)) });
    expect(flush?.cached).toMatchObject({ structure: "table-entry", table: "paging", level: 1, address: BigInt(leaf), value: 0n });
    // The flush, then the invalidation the negative entry needs: the page is reached.
    rig.device.cacheLineFlushed(leaf);
    rig.submit(wide.iotlbPage(DID, IOVA));
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(true);
  });

  it("cacheLineFlushes: a pass-through request reads no paging entries, so a hidden paging store is not its report", () => {
    const reports: DriverBugReport[] = [];
    const rig = scalableRig({ cacheLineFlushes: true, checker: { onReport: (r: DriverBugReport) => reports.push(r) } });
    const t = rig.tables;
    const dir = t.smContext(SID, { pasidEnable: true, ridPasid: 0 });
    const fs = t.page();
    t.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, did: DID, firstStageRoot: fs });
    t.pasidEntry(dir, 1, { pgtt: Pgtt.PassThrough, did: DID + 1, firstStageRoot: fs }); // FSPTPTR is not used with PGTT 100
    const leaf = t.mapFirstStage(fs, IOVA, DATA, 0x26n);
    enableScalableQueued(rig);
    const bytes = new Uint8Array(4);
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(true); // PASID 0 (RID_PASID): the unit read the first-stage lines
    rig.ram.write64(leaf, BigInt(DATA + 0x1000) | 0x27n); // a store the unit does not see yet
    expect(rig.device.dmaRead(SID, IOVA, bytes, { pasid: 1 }).ok).toBe(true); // pass-through: no paging entry read
    expect(reports).toEqual([]);
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(true); // PASID 0 again: the hidden store is named
    expect(reports.map((r) => r.kind)).toEqual(["unflushed-table-write"]);
  });

  it("rwbf: a first-stage PTE made present (no invalidation owed) without a write-buffer flush is missing-write-buffer-flush", () => {
    const reports: DriverBugReport[] = [];
    const rig = scalableRig({ rwbf: true, checker: { onReport: (r: DriverBugReport) => reports.push(r) } });
    const t = rig.tables;
    const dir = t.smContext(SID, { ridPasid: 0 });
    const fs = t.page();
    t.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, did: DID, firstStageRoot: fs });
    t.mapFirstStage(fs, IOVA + 0x1000, DATA, 0x26n); // its neighbour IOVA stays not present
    enableScalableQueued(rig);
    const bytes = new Uint8Array(4);
    expect(rig.device.dmaRead(SID, IOVA + 0x1000, bytes).ok).toBe(true); // the unit read the leaf's line
    const leaf = t.mapFirstStage(fs, IOVA, DATA, 0x6n); // the store, no GCMD.WBF
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(false);
    const flush = reports.find((r) => r.kind === "missing-write-buffer-flush");
    expect(flush?.missing.action).toBe("write-buffer-flush");
    expect(flush?.cached).toMatchObject({ structure: "table-entry", table: "paging", level: 1, address: BigInt(leaf), value: 0n });
    rig.device.writeRegister(Reg.GCMD, 4, (rig.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK) | Gcmd.WBF);
    expect(rig.device.dmaRead(SID, IOVA, bytes).ok).toBe(true);
    expect(reports.filter((r) => r.kind !== "missing-write-buffer-flush")).toEqual([]);
  });
});
