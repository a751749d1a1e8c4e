/**
 * IOMMU notifiers and IOTLB invalidations (tables built by test/support/tables.ts, invalidations
 * by register): what page-selective, domain-selective and global invalidations report, to whom,
 * at what cost in entries walked.
 */
import { describe, expect, it } from "vitest";
import { R, W } from "../../../test/support/tables.ts";
import { MAP, UNMAP, SID, OTHER, K4, M2, G1, psi, dsi, iotlbGlobal, contextDevice, collector, mapEvent, unmapEvent, UNMAP_ALL, unit } from "../../../test/support/notifier-rig.ts";

describe("page-selective invalidation", () => {
  it("a new 4K mapping: one MAP with its size, walking only the range; unmapping it: one UNMAP", () => {
    const { m, root, space, stats } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    expect(space.replay(c.notify)).toBe(0);
    const pte = m.tables.map(root, 4, 0x4000_3000, 0x20_0000, R | W);
    const walked = stats.entriesWalked;
    psi(m, 1, 0x4000_3000);
    expect(c.take()).toEqual([mapEvent(0x4000_3000, 0x20_0000, K4)]);
    expect(stats.entriesWalked - walked).toBe(4); // one entry per level
    psi(m, 1, 0x4000_3000);
    expect(c.take()).toEqual([]); // unchanged
    m.ram.write64(pte, 0n);
    psi(m, 1, 0x4000_3000);
    expect(c.take()).toEqual([unmapEvent(0x4000_3000, 0x20_0000, K4)]);
    psi(m, 1, 0x4000_3000);
    expect(c.take()).toEqual([]); // removed once
    contextDevice(m, SID);
    expect(c.take()).toEqual([]); // nothing left to unmap, nothing to replay
  });

  it("a read-only page is reported with its permission; a permission change is UNMAP then MAP", () => {
    const { m, root, space } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    const pte = m.tables.map(root, 4, 0x5000, 0x30_0000, R);
    psi(m, 1, 0x5000);
    m.ram.write64(pte, 0x30_0000n | W);
    psi(m, 1, 0x5000);
    expect(c.take()).toEqual([mapEvent(0x5000, 0x30_0000, K4, 1), unmapEvent(0x5000, 0x30_0000, K4), mapEvent(0x5000, 0x30_0000, K4, 2)]);
  });

  it("superpages are one event with their size: 2 MiB and 1 GiB", () => {
    const { m, root, space } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0x8000_0000, 0x4000_0000, R | W, 3);
    m.tables.map(root, 4, 0x20_0000, 0x60_0000, R, 2);
    psi(m, 1, 0x8000_0000 + 5 * M2 + 7 * K4); // one 4 KiB page inside the 1 GiB page
    psi(m, 1, 0x20_0000 + 3 * K4);
    expect(c.take()).toEqual([mapEvent(0x8000_0000, 0x4000_0000, G1), mapEvent(0x20_0000, 0x60_0000, M2, 1)]);
    expect(space.reported().map((r) => r.size)).toEqual([M2, G1]);
  });

  it("a superpage split invalidated for one page: UNMAP of the superpage, MAP of the 511 pages left", () => {
    const { m, root, space } = unit();
    const c = collector();
    const base = 0x4000_0000;
    const leaf = m.tables.map(root, 4, base, 0x20_0000, R | W, 2);
    space.register(c.notify, { events: MAP | UNMAP });
    expect(space.replay(c.notify)).toBe(1);
    // The atomic split: a table mirroring the 2 MiB page minus page 300, then the leaf replaced by a pointer to it.
    const table = m.tables.page();
    for (let i = 0; i < 512; i++) if (i !== 300) m.ram.write64(table + i * 8, BigInt(0x20_0000 + i * K4) | R | W);
    m.ram.write64(leaf, BigInt(table) | R | W);
    psi(m, 1, base + 300 * K4);
    const events = c.take();
    expect(events[0]).toEqual(mapEvent(base, 0x20_0000, M2));
    expect(events[1]).toEqual(unmapEvent(base, 0x20_0000, M2));
    expect(events.slice(2)).toHaveLength(511);
    expect(events.slice(2).every((e) => e.type === MAP && e.addressMask === K4 - 1 && e.translatedAddress - 0x20_0000 === e.iova - base)).toBe(true);
    expect(events.some((e) => e.type === MAP && e.iova === base + 300 * K4)).toBe(false);
  });

  it("only the invalidated domain's spaces walk; with nobody listening nothing walks at all", () => {
    const { m, root, space, stats } = unit();
    const otherRoot = m.tables.context(OTHER, { did: 2, aw: 2 });
    contextDevice(m, OTHER);
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(otherRoot, 4, 0x1000, 0x30_0000, R | W);
    psi(m, 1, 0x1000);
    dsi(m, 2);
    expect(stats.entriesWalked).toBe(0);
    expect(m.device.notifiers.active).toBe(false);
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    const walked = stats.entriesWalked;
    psi(m, 2, 0x1000);
    dsi(m, 2);
    expect(stats.entriesWalked).toBe(walked);
    expect(c.seen).toEqual([]);
    space.unregister(c.notify);
    expect(m.device.notifiers.active).toBe(false);
  });

  it("a notifier's range filters what it is told, and replay tells only that notifier", () => {
    const { m, root, space } = unit();
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, 4, 0x10_0000, 0x21_0000, R | W);
    const all = collector(), low = collector();
    space.register(all.notify, { events: MAP | UNMAP });
    space.register(low.notify, { events: MAP | UNMAP, range: { start: 0, end: 0x8_0000 } });
    expect(space.replay(low.notify)).toBe(1);
    expect(low.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4)]);
    expect(all.seen).toEqual([]);
    expect(space.replay(all.notify)).toBe(2);
    m.tables.map(root, 4, 0x20_0000, 0x22_0000, R | W);
    dsi(m, 1);
    expect(low.seen).toEqual([]);
    expect(all.take().slice(2)).toEqual([mapEvent(0x20_0000, 0x22_0000, K4)]);
  });
});

describe("domain-selective and global invalidation", () => {
  it("unchanged: no event; changed: UNMAP then MAP; removed: UNMAP once", () => {
    const { m, root, space } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    const a = m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    const b = m.tables.map(root, 4, 0x2000, 0x21_0000, R | W);
    m.tables.map(root, 4, 0x3000, 0x22_0000, R);
    dsi(m, 1);
    expect(c.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4), mapEvent(0x2000, 0x21_0000, K4), mapEvent(0x3000, 0x22_0000, K4, 1)]);
    dsi(m, 1);
    iotlbGlobal(m);
    expect(c.take()).toEqual([]);
    m.ram.write64(a, 0x25_0000n | R | W);
    m.ram.write64(b, 0n);
    dsi(m, 1);
    expect(c.take()).toEqual([unmapEvent(0x1000, 0x20_0000, K4), mapEvent(0x1000, 0x25_0000, K4), unmapEvent(0x2000, 0x21_0000, K4)]);
    iotlbGlobal(m);
    dsi(m, 1);
    expect(c.take()).toEqual([]);
  });

  it("a space with only UNMAP listeners gets the invalidated ranges, without a walk", () => {
    const { m, space, stats } = unit();
    const c = collector();
    space.register(c.notify, { events: UNMAP });
    psi(m, 1, 0x4000_0000, 9);
    dsi(m, 1);
    psi(m, 7, 0x1000); // another domain
    expect(c.take()).toEqual([unmapEvent(0x4000_0000, 0, M2), UNMAP_ALL]);
    expect(stats.entriesWalked).toBe(0);
  });
});
