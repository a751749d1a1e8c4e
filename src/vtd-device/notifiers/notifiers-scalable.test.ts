/**
 * Notifiers in scalable mode (VT-d 5.10): MAP/UNMAP of second-stage PASID entries, for requests
 * without PASID (RID_PASID) and with one, driven by the invalidations the guest issues through
 * the 256-bit queue; and the nested model's events (iommufd's names) for first-stage entries.
 */
import { describe, expect, it } from "vitest";
import { PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { R, W } from "../../../test/support/tables.ts";
import { collector, mapEvent, unit, unmapEvent, UNMAP_ALL, MAP, UNMAP } from "../../../test/support/notifier-rig.ts";
import { enableScalableQueued, scalableRig, wide } from "../../../test/support/scalable-notifier-rig.ts";
import {
  IOMMU_VTD_INV_ALL_PAGES, IOMMU_VTD_INV_FLAGS_LEAF, IOMMU_VTD_S1_SRE, IOMMU_VTD_S1_WPE, type NestedNotifier,
} from "./nested-types.ts";

const SID = 0x20, RID_PASID = 3, PASID = 9;
const K4 = 4096;

function secondStageSetup() {
  const rig = scalableRig();
  const t = rig.tables;
  const dir = t.smContext(SID, { pasidEnable: true, ridPasid: RID_PASID });
  const ridTable = t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.SecondStage, aw: 2, did: 5 });
  const pasidTable = t.pasidEntry(dir, PASID, { pgtt: Pgtt.SecondStage, aw: 2, did: 6 });
  enableScalableQueued(rig);
  return { rig, t, dir, ridTable, pasidTable };
}

function recorder() {
  const events: string[] = [];
  const notifier: NestedNotifier = {
    hwptAlloc: (e) => events.push(`alloc sid=${e.sid} pasid=${e.pasid} entry=${e.entryPasid} did=${e.did} pgtbl=${e.data.pgtblAddr.toString(16)} flags=${e.data.flags} aw=${e.data.addrWidth}`),
    hwptDetach: (e) => events.push(`detach sid=${e.sid} pasid=${e.pasid}`),
    hwptInvalidate: (e) => events.push(`inv ${e.cache} did=${e.did} entry=${e.entryPasid} addr=${e.data.addr.toString(16)} npages=${e.data.npages} flags=${e.data.flags}`),
  };
  return { events, notifier, take: () => events.splice(0) };
}

describe("notifiers in scalable mode: second-stage PASID entries", () => {
  it("requests without PASID (RID_PASID) and with a PASID are two spaces, each synced by IOTLB and PASID-based IOTLB invalidations of its DID and PASID", () => {
    const { rig, t, ridTable, pasidTable } = secondStageSetup();
    const rid = collector(), withPasid = collector();
    rig.device.notifiers.addressSpace(SID).register(rid.notify, { events: MAP | UNMAP });
    rig.device.notifiers.addressSpace(SID, PASID).register(withPasid.notify, { events: MAP | UNMAP });
    t.map(ridTable, 4, 0x1000, 0x30_0000, R | W);
    t.map(pasidTable, 4, 0x1000, 0x31_0000, R);
    // The PASID-based IOTLB invalidation of the other PASID syncs nothing here.
    rig.submit(wide.pasidIotlbPage(5, PASID, 0x1000));
    expect([rid.take(), withPasid.take()]).toEqual([[], []]);
    rig.submit(wide.pasidIotlbPage(5, RID_PASID, 0x1000));
    expect(rid.take()).toEqual([mapEvent(0x1000, 0x30_0000, K4, 3)]);
    // An IOTLB (type 2) page invalidation of DID 6 syncs the PASID space.
    rig.submit(wide.iotlbPage(6, 0x1000));
    expect(withPasid.take()).toEqual([mapEvent(0x1000, 0x31_0000, K4, 1)]);
    // Remap and unmap: whole-PASID and page-selective.
    rig.ram.write64(t.entryOf(ridTable, 4, 0x1000), 0x32_0000n | R);
    rig.ram.write64(t.entryOf(pasidTable, 4, 0x1000), 0n);
    rig.submit(wide.pasidIotlbAll(5, RID_PASID), wide.pasidIotlbPage(6, PASID, 0x1000, 0, true));
    expect(rid.take()).toEqual([unmapEvent(0x1000, 0x30_0000, K4), mapEvent(0x1000, 0x32_0000, K4, 1)]);
    expect(withPasid.take()).toEqual([unmapEvent(0x1000, 0x31_0000, K4)]);
    expect(rig.device.notifiers.addressSpace(SID).reported()).toEqual([{ iova: 0x1000, size: K4, translatedAddress: 0x32_0000, permission: 1 }]);
  });

  it("a PASID-cache invalidation re-reads the entry: a new table is unmapped and replayed, an unchanged entry or another DID tells nothing", () => {
    const { rig, t, dir, ridTable } = secondStageSetup();
    const c = collector();
    const space = rig.device.notifiers.addressSpace(SID);
    space.register(c.notify, { events: MAP | UNMAP });
    t.map(ridTable, 4, 0x5000, 0x40_0000, R | W);
    rig.submit(wide.pasidIotlbPage(5, RID_PASID, 0x5000));
    c.take();
    rig.submit(wide.pasidCache(1, 5, RID_PASID), wide.pasidCache(0, 5));
    expect(c.take()).toEqual([]);
    // The guest moves RID_PASID to a new table of DID 5: unseen until it invalidates the PASID cache of DID 5.
    const fresh = t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.SecondStage, aw: 2, did: 5 });
    t.map(fresh, 4, 0x7000, 0x41_0000, R | W);
    rig.submit(wide.pasidCache(0, 4), wide.pasidIotlbAll(5, RID_PASID));
    expect(c.take()).toEqual([]); // still the old table: the range 0x5000 is synced against it, unchanged
    rig.submit(wide.pasidCache(1, 5, RID_PASID));
    expect(c.take()).toEqual([UNMAP_ALL, mapEvent(0x7000, 0x41_0000, K4, 3)]);
    expect(rig.device.notifiers.stats.pasidEntrySyncs).toBe(1);
    // The entry moves to DID 8: a PASID-cache invalidation of DID 8 (the new DID) finds it; IOTLB ones of DID 5 no longer sync it.
    t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.SecondStage, aw: 2, did: 8, secondStageRoot: fresh });
    rig.submit(wide.pasidCache(0, 8));
    expect(c.take()).toEqual([UNMAP_ALL, mapEvent(0x7000, 0x41_0000, K4, 3)]);
    rig.ram.write64(t.entryOf(fresh, 4, 0x7000), 0n);
    rig.submit(wide.iotlbDomain(5));
    expect(c.take()).toEqual([]);
    rig.submit(wide.iotlbDomain(8));
    expect(c.take()).toEqual([unmapEvent(0x7000, 0x41_0000, K4)]);
  });

  it("a context-cache invalidation unmaps and replays; a pass-through entry is one identity MAP; a first-stage entry is nothing to MAP notifiers", () => {
    const { rig, t, dir, ridTable } = secondStageSetup();
    const c = collector();
    rig.device.notifiers.addressSpace(SID).register(c.notify, { events: MAP | UNMAP });
    t.map(ridTable, 4, 0x2000, 0x50_0000, R | W);
    rig.submit(wide.contextDevice(SID));
    expect(c.take()).toEqual([mapEvent(0x2000, 0x50_0000, K4, 3)]);
    t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.PassThrough, did: 5 });
    rig.submit(wide.pasidCache(1, 5, RID_PASID));
    expect(c.take()).toEqual([UNMAP_ALL, mapEvent(0, 0, 2 ** 48, 3)]);
    const fs = t.page();
    t.mapFirstStage(fs, 0x2000, 0x50_0000, 0x6n);
    t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.FirstStage, did: 5, firstStageRoot: fs });
    rig.submit(wide.pasidCache(1, 5, RID_PASID), wide.pasidIotlbAll(5, RID_PASID));
    expect(c.take()).toEqual([UNMAP_ALL]);
    expect(rig.device.notifiers.addressSpace(SID).reported()).toEqual([]);
  });
});

describe("the nested model (iommufd): first-stage PASID entries", () => {
  function firstStageSetup(deviceIotlb = false) {
    const rig = scalableRig({ deviceIotlb });
    const t = rig.tables;
    const dir = t.smContext(SID, { pasidEnable: true, ridPasid: RID_PASID, extra: [deviceIotlb ? 4n : 0n, 0n, 0n, 0n] });
    const fs = t.page();
    t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.FirstStage, did: 5, firstStageRoot: fs, sre: true, wpe: true });
    enableScalableQueued(rig);
    return { rig, t, dir, fs };
  }

  it("registration attaches the table (IOMMU_HWPT_ALLOC with iommu_hwpt_vtd_s1); PASID-based IOTLB invalidations become IOMMU_HWPT_INVALIDATE requests (addr, npages, IOMMU_VTD_INV_FLAGS_LEAF from IH)", () => {
    const { rig, fs } = firstStageSetup();
    const r = recorder();
    rig.device.notifiers.addressSpace(SID).registerNested(r.notifier);
    const flags = IOMMU_VTD_S1_SRE | IOMMU_VTD_S1_WPE;
    expect(r.take()).toEqual([`alloc sid=${SID} pasid=-1 entry=${RID_PASID} did=5 pgtbl=${fs.toString(16)} flags=${flags} aw=48`]);
    rig.submit(
      wide.pasidIotlbPage(5, RID_PASID, 0x12_3000, 2, true), // 4 pages from 0x12_0000, IH
      wide.pasidIotlbPage(5, RID_PASID, 0x4000),
      wide.pasidIotlbPage(5, 4, 0x4000), // another PASID
      wide.pasidIotlbPage(6, RID_PASID, 0x4000), // another DID
      wide.pasidIotlbAll(5, RID_PASID),
      wide.iotlbDomain(5), // the unit drops first-stage entries by DID too
      wide.iotlbGlobal(),
    );
    expect(r.take()).toEqual([
      `inv iotlb did=5 entry=${RID_PASID} addr=120000 npages=4 flags=${IOMMU_VTD_INV_FLAGS_LEAF}`,
      `inv iotlb did=5 entry=${RID_PASID} addr=4000 npages=1 flags=0`,
      `inv iotlb did=5 entry=${RID_PASID} addr=0 npages=${IOMMU_VTD_INV_ALL_PAGES} flags=0`,
      `inv iotlb did=5 entry=${RID_PASID} addr=0 npages=${IOMMU_VTD_INV_ALL_PAGES} flags=0`,
      `inv iotlb did=5 entry=${RID_PASID} addr=0 npages=${IOMMU_VTD_INV_ALL_PAGES} flags=0`,
    ]);
    expect(rig.device.notifiers.stats).toMatchObject({ hwptAllocEvents: 1, hwptInvalidateEvents: 5, mapEvents: 0, unmapEvents: 0 });
  });

  it("a changed entry is learned at the PASID-cache invalidation (not before): hwptAlloc of the new table, hwptDetach when it goes", () => {
    const { rig, t, dir } = firstStageSetup();
    const r = recorder();
    rig.device.notifiers.addressSpace(SID).registerNested(r.notifier);
    r.take();
    const next = t.page();
    t.pasidEntry(dir, RID_PASID, { pgtt: Pgtt.FirstStage, did: 5, firstStageRoot: next });
    rig.submit(wide.pasidIotlbAll(5, RID_PASID));
    expect(r.take()).toEqual([`inv iotlb did=5 entry=${RID_PASID} addr=0 npages=${IOMMU_VTD_INV_ALL_PAGES} flags=0`]);
    rig.submit(wide.pasidCache(1, 5, RID_PASID), wide.pasidCache(1, 5, RID_PASID));
    expect(r.take()).toEqual([`alloc sid=${SID} pasid=-1 entry=${RID_PASID} did=5 pgtbl=${next.toString(16)} flags=0 aw=48`]);
    t.pasidEntry(dir, RID_PASID, { present: false });
    rig.submit(wide.pasidCache(0, 5), wide.pasidIotlbAll(5, RID_PASID));
    expect(r.take()).toEqual([`detach sid=${SID} pasid=-1`]);
  });

  it("device-TLB invalidations (legacy and PASID-based) reach the requester id's nested spaces as device-tlb requests; a throwing host is counted", () => {
    const { rig, t, dir } = firstStageSetup(true);
    const fs9 = t.page();
    t.pasidEntry(dir, PASID, { pgtt: Pgtt.FirstStage, did: 7, firstStageRoot: fs9 });
    const r = recorder(), r9 = recorder();
    rig.device.notifiers.addressSpace(SID).registerNested(r.notifier);
    rig.device.notifiers.addressSpace(SID, PASID).registerNested(r9.notifier);
    r.take();
    r9.take();
    rig.submit(wide.deviceTlb(SID, 0x8000), [8n | (BigInt(SID) << 16n) | (BigInt(PASID) << 32n), 0x9000n]);
    expect(r.take()).toEqual([`inv device-tlb did=5 entry=${RID_PASID} addr=8000 npages=1 flags=0`, `inv device-tlb did=5 entry=${RID_PASID} addr=9000 npages=1 flags=0`]);
    expect(r9.take()).toEqual([`inv device-tlb did=7 entry=${PASID} addr=8000 npages=1 flags=0`, `inv device-tlb did=7 entry=${PASID} addr=9000 npages=1 flags=0`]);
    const space = rig.device.notifiers.addressSpace(SID, 11);
    space.registerNested({ hwptAlloc: () => { throw new Error("host"); }, hwptDetach: () => {}, hwptInvalidate: () => {} });
    expect(rig.device.notifiers.stats.notifierErrors).toBe(0); // PASID 11 has no entry: nothing told
    t.pasidEntry(dir, 11, { pgtt: Pgtt.FirstStage, did: 7, firstStageRoot: fs9 });
    expect(() => rig.submit(wide.pasidCache(3, 0))).not.toThrow();
    expect(rig.device.notifiers.stats.notifierErrors).toBe(1);
  });
});

describe("scalable-mode address spaces: registration", () => {
  it("a PASID must be in 0..2^20-1; one nested notifier per space, with the three methods; a legacy unit's PASID space reaches nothing", () => {
    const rig = scalableRig();
    const notifiers = rig.device.notifiers;
    for (const bad of [-2, 0x10_0000, 1.5, NaN]) expect(() => notifiers.addressSpace(SID, bad)).toThrow(/PASID/);
    expect(notifiers.addressSpace(SID, 7)).toBe(notifiers.addressSpace(SID, 7));
    expect(notifiers.addressSpace(SID, 7)).not.toBe(notifiers.addressSpace(SID));
    expect(notifiers.addressSpace(SID, 7).name).toBe("00:04.0 PASID 7");
    const space = notifiers.addressSpace(SID, 7);
    const r = recorder();
    expect(() => space.registerNested({ hwptAlloc: () => {} } as unknown as NestedNotifier)).toThrow(/hwptAlloc, hwptDetach and hwptInvalidate/);
    space.registerNested(r.notifier);
    expect(() => space.registerNested(recorder().notifier)).toThrow(/already registered/);
    expect(() => space.unregisterNested(recorder().notifier)).toThrow(/not registered/);
    expect([space.notifierCount, notifiers.listeningSpaces()]).toEqual([1, [space]]);
    space.unregisterNested(r.notifier);
    expect([space.notifierCount, notifiers.listeningSpaces()]).toEqual([0, []]);

    const legacy = unit();
    legacy.m.tables.map(legacy.root, 4, 0x3000, 0x60_0000, R | W);
    const c = collector();
    legacy.m.device.notifiers.addressSpace(SID, 1).register(c.notify, { events: MAP | UNMAP });
    legacy.space.register(collector().notify, { events: MAP | UNMAP });
    expect(legacy.m.device.notifiers.addressSpace(SID, 1).reported()).toEqual([]);
    expect(legacy.space.reported()).toEqual([{ iova: 0x3000, size: K4, translatedAddress: 0x60_0000, permission: 3 }]);
    expect(c.seen).toEqual([]);
  });
});

describe("context-cache invalidation in scalable mode", () => {
  it("domain-selective reaches every space (a scalable-mode context entry has no DID, the unit drops every PASID-cache entry)", () => {
    const { rig, t, dir } = secondStageSetup();
    const c = collector();
    rig.device.notifiers.addressSpace(SID, PASID).register(c.notify, { events: MAP | UNMAP });
    const moved = t.pasidEntry(dir, PASID, { pgtt: Pgtt.SecondStage, aw: 2, did: 6 });
    t.map(moved, 4, 0x9000, 0x70_0000, R);
    rig.submit([1n | (2n << 4n) | (123n << 16n)]); // context-cache, domain-selective, DID 123
    expect(c.take()).toEqual([mapEvent(0x9000, 0x70_0000, K4, 1)]);
  });
});
