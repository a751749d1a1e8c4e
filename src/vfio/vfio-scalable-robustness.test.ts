/**
 * Random guest tables in scalable mode with both models listening: PASID entries of every PGTT with
 * random flags and table pointers, paging tables whose entries point anywhere in a small pool of
 * tables (shared, self-referencing, superpages, reserved bits), rewritten between invalidations,
 * and every kind of invalidation the guest can issue. Nothing throws, and each invalidation costs
 * bounded work whatever the tables hold: at most one bounded sync per listening space (the
 * notifier bounds), one nested event per space, and host IOTLB work bounded by its size.
 */
import { describe, expect, it } from "vitest";
import { PasidGranularTranslationType as Pgtt } from "../spec/scalable.ts";
import { SHARED_TABLE_FACTOR } from "../vtd-device/notifiers/page-walk-sync.ts";
import { enableScalableQueued, scalableRig, wide, type Wide } from "../../test/support/scalable-notifier-rig.ts";
import { assignDevice, type VfioAssignment } from "./vfio.ts";
import { HOST_IOTLB_ENTRIES } from "./nested-hwpt.ts";
import { mulberry32 as random } from "../../test/support/vfio-workload.ts";

const SID = 0x40, PASIDS = [-1, 1, 2, 0x41];
const TABLE_LIMIT = 48, EVENT_BUDGET = 4096;

describe("random scalable-mode tables with MAP/UNMAP and nested listeners", () => {
  it("never throws; every invalidation does bounded work (entries walked, events, host IOTLB work)", () => {
    const rnd = random(0xbadc0de);
    const int = (n: number) => Math.floor(rnd() * n);
    const rig = scalableRig({ notifierTableLimit: TABLE_LIMIT, notifierEventBudget: EVENT_BUDGET }, 32 << 20);
    const t = rig.tables;
    const dir = t.smContext(SID, { pasidEnable: true, ridPasid: 1 });
    const pool = Array.from({ length: 24 }, () => t.page());
    const scramble = (table: number) => {
      for (let i = 0; i < 512; i++) {
        const r = rnd();
        let value = 0n;
        if (r < 0.45) value = BigInt(pool[int(pool.length)]!) | BigInt(int(0x100)); // a table (or a leaf) of the pool, random low flags
        else if (r < 0.55) value = BigInt(0x100_0000 + int(0x200) * 0x20_0000) | 0x87n; // a superpage, anywhere
        else if (r < 0.6) value = BigInt(int(2 ** 30)) * 2n ** 22n | BigInt(int(8)); // reserved or high bits
        rig.ram.write64(table + i * 8, value);
      }
    };
    const writeEntries = () => {
      for (const pasid of [1, 2, 0x41]) {
        const pgtt = [Pgtt.FirstStage, Pgtt.SecondStage, Pgtt.PassThrough, 3, 0][int(5)]!;
        t.pasidEntry(dir, pasid, {
          present: rnd() < 0.9, pgtt, did: 1 + int(3), aw: rnd() < 0.8 ? 2 : int(4), secondStageRoot: pool[int(pool.length)]!, firstStageRoot: pool[int(pool.length)]!,
          sre: rnd() < 0.5, wpe: rnd() < 0.5, nxe: rnd() < 0.3,
        });
      }
    };
    for (const table of pool) scramble(table);
    writeEntries();
    enableScalableQueued(rig);
    const devices: VfioAssignment[] = PASIDS.map((pasid) => assignDevice(rig.device, SID, pasid < 0 ? {} : { pasid }));
    const stats = rig.device.notifiers.stats;
    const descriptor = (): Wide => {
      const did = 1 + int(3), pasid = [1, 2, 0x41][int(3)]!;
      switch (int(9)) {
        case 0: return wide.contextGlobal();
        case 1: return wide.contextDevice(SID);
        case 2: return wide.pasidCache([0, 1, 3][int(3)]!, did, pasid);
        case 3: return wide.pasidIotlbAll(did, pasid);
        case 4: return wide.pasidIotlbPage(did, pasid, int(2 ** 24) * 4096, int(10), rnd() < 0.5);
        case 5: return wide.iotlbPage(did, int(2 ** 24) * 4096, int(10));
        case 6: return wide.iotlbDomain(did);
        case 7: return wide.iotlbGlobal();
        default: return wide.pasidCache(3, 0);
      }
    };
    const perSync = SHARED_TABLE_FACTOR * TABLE_LIMIT * 512;
    const bytes = new Uint8Array(16);
    let maxWalked = 0, maxEvents = 0, maxNested = 0, maxDropped = 0;
    for (let step = 0; step < 400; step++) {
      if (rnd() < 0.3) scramble(pool[int(pool.length)]!);
      if (rnd() < 0.15) writeEntries();
      const before = { walked: stats.entriesWalked, events: stats.mapEvents + stats.unmapEvents, nested: stats.hwptAllocEvents + stats.hwptDetachEvents + stats.hwptInvalidateEvents };
      const dropped = devices.map((d) => d.nestedHwpt!.entriesDropped);
      expect(() => rig.submit(descriptor())).not.toThrow();
      maxWalked = Math.max(maxWalked, stats.entriesWalked - before.walked);
      maxEvents = Math.max(maxEvents, stats.mapEvents + stats.unmapEvents - before.events);
      maxNested = Math.max(maxNested, stats.hwptAllocEvents + stats.hwptDetachEvents + stats.hwptInvalidateEvents - before.nested);
      devices.forEach((d, i) => (maxDropped = Math.max(maxDropped, d.nestedHwpt!.entriesDropped - dropped[i]!)));
      // The devices' DMA never throws, whatever their tables say.
      for (const d of devices) {
        for (let n = 0; n < 4; n++) {
          const iova = rnd() < 0.5 ? int(2 ** 24) * 4096 : 0x100_0000 + int(2 ** 15) * 4096;
          expect(() => (rnd() < 0.5 ? d.device.dmaRead(iova, bytes) : d.device.dmaWrite(iova, bytes))).not.toThrow();
        }
      }
    }
    // One bounded sync per listening space per invalidation, one nested event each, a host IOTLB flush at most its size.
    expect(maxWalked).toBeLessThanOrEqual(PASIDS.length * perSync);
    expect(maxEvents).toBeLessThanOrEqual(PASIDS.length * (EVENT_BUDGET + 2));
    expect(maxNested).toBeLessThanOrEqual(PASIDS.length);
    expect(maxDropped).toBeLessThanOrEqual(HOST_IOTLB_ENTRIES);
    // The random guest reached both models and the bounds.
    expect(stats.hwptAllocEvents).toBeGreaterThan(10);
    expect(stats.hwptInvalidateEvents).toBeGreaterThan(10);
    expect(stats.mapEvents).toBeGreaterThan(100);
    expect(stats.walkLimitHits).toBeGreaterThan(0);
    expect(devices.some((d) => d.nestedHwpt!.walks > 0)).toBe(true);
  });
});
