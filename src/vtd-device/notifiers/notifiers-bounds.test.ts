/**
 * IOMMU notifiers against tables built to make the host work: aliased and self-referencing
 * tables, more tables than the record may hold, more events than a sync may report. Each sync is
 * cut in the spec's terms (the space unmapped whole, the embedder told) while a legitimate
 * guest's tables, however large, are mirrored whole. Counts only: no timed assertion.
 */
import { describe, expect, it } from "vitest";
import { machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";
import {
  aliasEverything, collector, contextDevice, contextGlobal, dsi, fillTable, G1, K4, M2, MAP, mapEvent, psi, SID, UNMAP, UNMAP_ALL, unit,
} from "../../../test/support/notifier-rig.ts";
import { assignDevice } from "../../vfio/vfio.ts";
import type { WalkLimitReport } from "./notifier-types.ts";
import type { Machine } from "../../../test/support/tables.ts";

function reportsOf(m: Machine): WalkLimitReport[] {
  const reports: WalkLimitReport[] = [];
  m.device.notifiers.onWalkLimit = (space, report) => {
    expect(space.sid).toBe(report.sid);
    reports.push(report);
  };
  return reports;
}

describe("shared and self-referencing tables", () => {
  it("a page table pointing to itself: a global context invalidation stops at the third table visit, the shadow gets one UNMAP, the embedder is told", () => {
    const { m, root, stats } = unit();
    const vfio = assignDevice(m.device, SID);
    const reports = reportsOf(m);
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    contextGlobal(m);
    expect(vfio.hostIommu.count).toBe(1);
    const walked = stats.entriesWalked;
    // Root, context table and one page table whose every entry points to itself: 2^48 bytes mapped.
    fillTable(m, root, root);
    contextGlobal(m);
    expect(reports).toEqual([{ sid: SID, cause: "shared-tables", limit: 2, tablesVisited: 3, distinctTables: 1, events: 0 }]);
    expect(stats.entriesWalked - walked).toBeLessThanOrEqual(2 * 512);
    expect({ map: stats.mapEvents, unmap: stats.unmapEvents, cuts: stats.sharedTableCuts }).toEqual({ map: 1, unmap: 1, cuts: 1 }); // the context invalidation's UNMAP of everything
    expect({ maps: vfio.hostIommu.mapCalls, mappings: vfio.hostIommu.count }).toEqual({ maps: 1, mappings: 0 });
    expect(vfio.device.dmaRead(0x1000, new Uint8Array(4)).ok).toBe(false);
    // IOTLB invalidations walk nothing while the space is cut; the next context invalidation tries again.
    const after = stats.entriesWalked;
    dsi(m, 1);
    psi(m, 1, 0x1000);
    expect(stats.entriesWalked).toBe(after);
    contextGlobal(m);
    expect(reports).toHaveLength(2);
    expect(stats.unmapEvents).toBe(1); // nothing was mirrored since: no second UNMAP
  });

  it("32,767 global context invalidations over that table in one tail write: each one cut at once", () => {
    const { m, root, stats } = unit();
    const vfio = assignDevice(m.device, SID);
    const reports = reportsOf(m);
    fillTable(m, root, root);
    const queue = new Queue(m, 0x100_0000, 7).enable();
    const n = queue.entries - 1;
    queue.submit(...Array.from({ length: n }, () => desc.contextGlobal()));
    // The tail write stops at the queue's work budget; the clock brings the rest (queue-work-budget.test.ts).
    for (let step = 0; step < 100 && queue.head !== n; step++) m.device.advanceTime(0.001);
    expect(queue.head).toBe(n);
    expect(reports).toHaveLength(n);
    expect(reports.every((r) => r.cause === "shared-tables" && r.tablesVisited === 3)).toBe(true);
    expect(stats.entriesWalked).toBeLessThanOrEqual(512 + n * 2 * 512); // the record built at assignment, then two tables each
    expect({ map: stats.mapEvents, unmap: stats.unmapEvents, hostCalls: vfio.hostIommu.mapCalls + vfio.hostIommu.unmapCalls }).toEqual({ map: 0, unmap: 0, hostCalls: 0 });
  });

  it("a last-level table under two parent entries (legal) is mirrored at both IOVAs; under every entry the sync is cut within 2 × 512 events per distinct table", () => {
    const { m, root, space, stats } = unit();
    const reports = reportsOf(m);
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0, 0x20_0000, R | W);
    const l2 = m.tables.entryOf(root, 4, 0, 2) - 0;
    const l1 = Number(m.ram.read64(l2) & ~0xfffn);
    for (let i = 0; i < 512; i++) m.ram.write64(l1 + i * 8, BigInt(0x20_0000 + i * K4) | R | W);
    m.ram.write64(l2 + 8, BigInt(l1) | R | W); // 2 MiB slot 1: the same table
    dsi(m, 1);
    expect(reports).toEqual([]);
    const events = c.take();
    expect(events).toHaveLength(1024);
    expect(events[512]).toEqual(mapEvent(M2, 0x20_0000, K4));
    // Every 2 MiB slot of the first GiB: 512 tables' worth of mappings from four tables.
    fillTable(m, l2, l1);
    dsi(m, 1);
    expect(reports.map((r) => [r.cause, r.distinctTables, r.tablesVisited])).toEqual([["shared-tables", 4, 9]]);
    const cut = c.take();
    expect(cut.length - 1).toBeLessThanOrEqual(2 * 512 * 4);
    expect(cut.at(-1)).toEqual(UNMAP_ALL);
    expect(space.reported()).toEqual([]);
    expect(stats.sharedTableCuts).toBe(1);
  });

  it("one page mapped at many IOVAs (leaf aliasing, legal and common) is never cut", () => {
    const { m, root, space, stats } = unit();
    const reports = reportsOf(m);
    let maps = 0;
    space.register(() => maps++, { events: MAP });
    for (let t = 0; t < 64; t++) {
      const pte = m.tables.map(root, 4, t * M2, 0x20_0000, R | W);
      const l1 = pte - (pte % 4096);
      for (let i = 0; i < 512; i++) m.ram.write64(l1 + i * 8, 0x20_0000n | R | W);
    }
    dsi(m, 1);
    expect(reports).toEqual([]);
    expect(maps).toBe(64 * 512);
    expect(stats.walkLimitHits).toBe(0);
  });

  it("the default bounds keep a fully aliased 4-level space to one small walk; a bad limit is an error naming it", () => {
    const { m, root, space, stats } = unit();
    space.register(() => {}, { events: MAP | UNMAP });
    aliasEverything(m, root);
    const walked = stats.entriesWalked;
    contextDevice(m, SID);
    expect(stats.walkLimitHits).toBe(1);
    expect(stats.sharedTableCuts).toBe(1);
    expect(stats.entriesWalked - walked).toBeLessThanOrEqual(4097 * 512);
    // Root, L3, L2, L1, then the L1 four more times (8 visits, twice the 4 distinct tables).
    expect(stats.entriesWalked - walked).toBe(8 * 512);
    expect(() => machine({ notifierTableLimit: 0 })).toThrow(/option notifierTableLimit/);
    expect(() => machine({ notifierEventBudget: 0 })).toThrow(/option notifierEventBudget/);
  });
});

describe("the record's size and the events of one sync", () => {
  it("a sync that would make the record hold more than notifierTableLimit tables: unmapped whole, the embedder told, mirrored again once the tables fit", () => {
    const limit = 64;
    const { m, root, space, stats } = unit({ notifierTableLimit: limit });
    const c = collector();
    const limited: [number, number][] = [];
    m.device.notifiers.onWalkLimit = (s, report) => limited.push([s.sid, report.limit]);
    space.register(c.notify, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    psi(m, 1, 0x1000);
    expect(c.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4)]);

    // 70 more distinct last-level tables: 74 with the root, the L3 and the L2.
    for (let i = 1; i <= 70; i++) m.tables.map(root, 4, i * M2, 0x30_0000, R | W);
    dsi(m, 1);
    expect(limited).toEqual([[SID, limit]]);
    expect(stats.walkLimitHits).toBe(1);
    expect(stats.tableLimitCuts).toBe(1);
    // At most `limit` tables read; what was sent before the stop is taken back by one UNMAP of everything.
    expect(stats.entriesWalked).toBeLessThanOrEqual((limit + 4) * 512);
    const events = c.take();
    expect(events.at(-1)).toEqual(UNMAP_ALL);
    expect(space.reported()).toEqual([]);
    // Nothing is walked while the space is over its limit.
    const walked = stats.entriesWalked;
    psi(m, 1, 0x5000);
    dsi(m, 1);
    expect(stats.entriesWalked).toBe(walked);
    expect(c.take()).toEqual([]);

    // The guest repairs its tables; the next context invalidation mirrors the space again.
    for (let i = 0; i < 512; i++) m.ram.write64(root + i * 8, 0n);
    m.tables.map(root, 4, 0x1000, 0x30_0000, R);
    contextDevice(m, SID);
    expect(c.take()).toEqual([mapEvent(0x1000, 0x30_0000, K4, 1)]);
    expect(stats.walkLimitHits).toBe(1);
  });

  it("page-selective syncs that each walk four distinct tables cannot grow the record past notifierTableLimit (one table under 512 parents)", () => {
    const limit = 16;
    const { m, root, space, stats } = unit({ notifierTableLimit: limit });
    const reports = reportsOf(m);
    space.register(() => {}, { events: MAP | UNMAP });
    const l3 = m.tables.page(), l2 = m.tables.page(), l1 = m.tables.page();
    m.ram.write64(root, BigInt(l3) | R | W);
    fillTable(m, l3, l2); // every 1 GiB slot: the same L2
    m.ram.write64(l2, BigInt(l1) | R | W);
    m.ram.write64(l1, 0x20_0000n | R | W);
    for (let i = 0; i < 512; i++) {
      psi(m, 1, i * G1);
      expect(space.recordTables).toBeLessThanOrEqual(limit);
    }
    expect(reports.map((r) => [r.cause, r.limit])).toEqual([["table-limit", limit]]);
    expect(stats.tableLimitCuts).toBe(1);
  });

  it("more events than notifierEventBudget in one sync: cut after exactly the budget; a sync within it is whole", () => {
    const budget = 1000;
    const { m, root, space, stats } = unit({ notifierEventBudget: budget });
    const reports = reportsOf(m);
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    for (let i = 0; i < 512; i++) m.tables.map(root, 4, i * K4, 0x20_0000 + i * K4, R | W);
    dsi(m, 1);
    expect(c.take()).toHaveLength(512);
    for (let i = 0; i < 512; i++) m.tables.map(root, 4, M2 + i * K4, 0x20_0000 + i * K4, R | W);
    for (let i = 0; i < 512; i++) m.tables.map(root, 4, 2 * M2 + i * K4, 0x20_0000 + i * K4, R | W);
    dsi(m, 1);
    expect(reports).toEqual([{ sid: SID, cause: "event-budget", limit: budget, tablesVisited: 6, distinctTables: 6, events: budget }]);
    const events = c.take();
    expect(events).toHaveLength(budget + 1);
    expect(events.at(-1)).toEqual(UNMAP_ALL);
    expect(stats.eventBudgetCuts).toBe(1);
  });

  it("a sync cut after its only MAP notifier unregistered itself: nothing thrown, the UNMAP listener told", () => {
    const { m, root, space, stats } = unit({ notifierEventBudget: 10 });
    const unmaps = collector();
    space.register(unmaps.notify, { events: UNMAP });
    const once = () => space.unregister(once);
    space.register(once, { events: MAP });
    for (let i = 0; i < 20; i++) m.tables.map(root, 4, i * K4, 0x20_0000, R | W);
    expect(() => dsi(m, 1)).not.toThrow();
    expect(stats.eventBudgetCuts).toBe(1);
    expect(unmaps.take().at(-1)).toEqual(UNMAP_ALL);
    expect(space.notifierCount).toBe(1);
  });
});

describe("a legitimate guest is never cut by the default bounds", () => {
  /** 1 GiB at IOVA 1 GiB as 262,144 4 KiB pages (or 512 2 MiB pages), tables written directly. */
  function gib(m: Machine, root: number, pageSize: "4K" | "2M", outputShift = 0): void {
    const ram = m.ram;
    let l3 = Number(m.ram.read64(root) & ~0xfffn);
    if (l3 === 0) ram.write64(root, BigInt((l3 = m.tables.page())) | R | W);
    let l2 = Number(m.ram.read64(l3 + 8) & ~0xfffn);
    if (l2 === 0) ram.write64(l3 + 8, BigInt((l2 = m.tables.page())) | R | W);
    for (let i = 0; i < 512; i++) {
      const output = G1 + i * M2 + outputShift;
      if (pageSize === "2M") {
        ram.write32(l2 + i * 8, (output % 2 ** 32) + 0x80 + 3);
        ram.write32(l2 + i * 8 + 4, Math.floor(output / 2 ** 32));
        continue;
      }
      let l1 = ram.read32(l2 + i * 8) & ~0xfff;
      if (l1 === 0 || (ram.read32(l2 + i * 8) & 0x80) !== 0) ram.write32(l2 + i * 8, (l1 = m.tables.page()) | 3);
      for (let j = 0; j < 512; j++) {
        ram.write32(l1 + j * 8, ((output + j * K4) % 2 ** 32) + 3);
        ram.write32(l1 + j * 8 + 4, Math.floor((output + j * K4) / 2 ** 32));
      }
    }
  }

  it("262,144 4 KiB pages: replay, an unchanged domain, every page moved at once, a context invalidation; then 512 2 MiB pages", () => {
    const { m, root, space, stats } = unit();
    const reports = reportsOf(m);
    gib(m, root, "4K");
    const counts = { map: 0, unmap: 0 };
    const notify = (e: { type: number }) => void (e.type === MAP ? counts.map++ : counts.unmap++);
    space.register(notify, { events: MAP | UNMAP });
    expect(space.replay(notify)).toBe(262_144);
    expect(space.recordTables).toBe(515);
    counts.map = 0;
    dsi(m, 1);
    expect(counts).toEqual({ map: 0, unmap: 0 });
    gib(m, root, "4K", 2 ** 32); // every output moves: UNMAP then MAP of each page in one sync
    dsi(m, 1);
    expect(counts).toEqual({ map: 262_144, unmap: 262_144 });
    contextDevice(m, SID);
    expect(counts).toEqual({ map: 2 * 262_144, unmap: 262_144 + 1 });
    gib(m, root, "2M");
    dsi(m, 1);
    expect(counts).toEqual({ map: 2 * 262_144 + 512, unmap: 2 * 262_144 + 1 });
    expect(space.recordTables).toBe(3);
    expect(reports).toEqual([]);
    expect(stats.walkLimitHits).toBe(0);
  });
});
