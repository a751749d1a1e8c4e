/**
 * IOMMU notifiers under bad input: a notifier that throws or re-enters the unit, bad entries in
 * the tables (never a throw or a fault record), and the sync walk against the unit's own walk.
 */
import { describe, expect, it } from "vitest";
import { Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";
import { walkConfig } from "../registers/capabilities.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import type { IommuNotifier } from "./notifier-types.ts";
import { accessFault, PageWalk, walkPages } from "../translation/walk.ts";
import { MAP, UNMAP, SID, OTHER, K4, M2, G1, dsi, contextDevice, collector, mapEvent, unmapEvent, unit, type Seen } from "../../../test/support/notifier-rig.ts";

describe("robustness", () => {
  it("a notifier that throws is reported; other notifiers, DMA and the queue go on", () => {
    const { m, root, space, stats } = unit();
    const q = new Queue(m).enable();
    const reports: string[] = [];
    m.device.notifiers.onNotifierError = (r) => reports.push(`${r.sid.toString(16)} ${r.event.type} ${(r.error as Error).message}`);
    const good = collector();
    space.register(() => {
      throw new Error("host out of memory");
    }, { events: MAP | UNMAP });
    space.register(good.notify, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    q.submit(desc.iotlbPage(1, 0x1000n), desc.iotlbPage(1, 0x1000n), desc.wait({ sw: true, data: 7, address: 0x90_0000n }));
    expect(reports).toEqual(["20 1 host out of memory"]);
    expect(stats.notifierErrors).toBe(1);
    expect(good.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4)]);
    expect(q.head).toBe(3);
    expect(m.ram.read32(0x90_0000)).toBe(7);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4)).ok).toBe(true);
    // An error handler that throws too is contained.
    m.device.notifiers.onNotifierError = () => {
      throw new Error("handler broken");
    };
    m.ram.write64(m.tables.entryOf(root, 4, 0x1000), 0n);
    expect(() => q.submit(desc.iotlbPage(1, 0x1000n))).not.toThrow();
    expect(good.take()).toEqual([unmapEvent(0x1000, 0x20_0000, K4)]);
  });

  it("a notifier may unregister itself, or make the unit invalidate again, while being told", () => {
    const { m, root, space } = unit();
    const seen: Seen[] = [];
    const once: IommuNotifier = (e) => {
      seen.push({ ...e });
      space.unregister(once);
    };
    const nested = collector();
    let depth = 0;
    const reentrant: IommuNotifier = (e) => {
      nested.notify(e);
      if (depth++ === 0) dsi(m, 1); // runs after the current sync, not inside it
    };
    space.register(once, { events: MAP });
    space.register(reentrant, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, 4, 0x2000, 0x21_0000, R | W);
    dsi(m, 1);
    expect(seen).toHaveLength(1);
    expect(space.notifierCount).toBe(1);
    expect(nested.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4), mapEvent(0x2000, 0x21_0000, K4)]);
  });

  it("a notifier that registers a MAP notifier on another address space while being told: both records are right", () => {
    const { m, root, space } = unit();
    const otherRoot = m.tables.context(OTHER, { did: 2, aw: 2 });
    contextDevice(m, OTHER);
    m.tables.map(otherRoot, 4, 0x7000, 0x50_0000, R | W);
    const other = m.device.notifiers.addressSpace(OTHER);
    const late = collector(), first = collector();
    space.register((e) => {
      first.notify(e);
      if (other.notifierCount === 0) {
        other.register(late.notify, { events: MAP | UNMAP }); // builds OTHER's record in the middle of this sync
        expect(other.replay(late.notify)).toBe(1);
      }
    }, { events: MAP | UNMAP });
    for (let i = 0; i < 3; i++) m.tables.map(root, 4, i * K4, 0x20_0000 + i * K4, R | W);
    dsi(m, 1);
    expect(first.take()).toEqual([0, 1, 2].map((i) => mapEvent(i * K4, 0x20_0000 + i * K4, K4)));
    expect(late.take()).toEqual([mapEvent(0x7000, 0x50_0000, K4)]);
    expect(space.reported()).toHaveLength(3);
    expect(other.reported()).toEqual([{ iova: 0x7000, size: K4, translatedAddress: 0x50_0000, permission: 3 }]);
  });

  it("a bad table while syncing: nothing thrown, no fault recorded, the entry counts as not mapped", () => {
    const { m, root, space, stats } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    const pte = m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, 4, 0x4000_0000, 0x30_0000, R | W);
    dsi(m, 1);
    c.take();
    m.ram.write64(pte, 0x20_0000n | R | W | (1n << 11n)); // reserved bit 11
    const l3 = m.tables.entryOf(root, 4, 0x4000_0000, 3);
    m.ram.write64(l3, 0x7fff_f000n | R | W); // next table beyond RAM
    expect(() => dsi(m, 1)).not.toThrow();
    expect(c.take()).toEqual([unmapEvent(0x1000, 0x20_0000, K4), unmapEvent(0x4000_0000, 0x30_0000, K4)]);
    expect(stats.badEntries).toBe(1 + 512); // the reserved bit, and every entry of the table beyond RAM
    expect(m.device.stats.faultsRecorded).toBe(0);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    // The unit's own DMA faults there, as the shadow says.
    expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4)).ok).toBe(false);
  });

  it("the sync walk and the unit's walk agree on random tables, bad entries included", () => {
    const m = machine({ awBits: 48, cachingMode: true });
    const root = m.tables.context(SID, { did: 1, aw: 2 });
    enableTranslation(m);
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const base = 0x40_0000_0000;
    const permission = () => BigInt(1 + Math.floor(random() * 3));
    const bad = () => (random() < 0.05 ? (random() < 0.5 ? 1n << 11n : 1n << 62n) : 0n);
    // A 4 GiB window: a 1 GiB leaf, then 2 MiB chunks that are a 2 MiB leaf or a table of random
    // 4 KiB leaves; random permissions, and a few reserved bits.
    m.tables.map(root, 4, base, 5 * G1, permission(), 3, bad());
    for (let chunk = 512; chunk < 4 * 512; chunk += 1 + Math.floor(random() * 3)) {
      const at = base + chunk * M2;
      if (random() < 0.2) {
        m.tables.map(root, 4, at, Math.floor(random() * 4096) * M2, permission(), 2, bad());
        continue;
      }
      for (let i = 0; i < 16; i++) m.tables.map(root, 4, at + Math.floor(random() * 512) * K4, Math.floor(random() * 2 ** 20) * K4, permission(), 1, bad());
      // Some tables' pointers lose a permission.
      if (random() < 0.1) {
        const entry = m.tables.entryOf(root, 4, at, 2);
        m.ram.write64(entry, m.ram.read64(entry) & ~(random() < 0.5 ? R : W));
      }
    }
    const space = m.device.notifiers.addressSpace(SID);
    space.register(() => {}, { events: MAP });
    const reported = space.reported();
    const lookup = (iova: number) => reported.find((r) => iova >= r.iova && iova < r.iova + r.size);
    const walk = new PageWalk();
    const mem = new MemoryAccess(m.ram);
    const cfg = walkConfig(m.device.options);
    let mapped = 0;
    for (let i = 0; i < 20_000; i++) {
      const iova = base + Math.floor(random() * 4 * G1 / K4) * K4;
      walkPages(mem, root, 2, iova, cfg, walk);
      const read = accessFault(walk, false) === 0, write = accessFault(walk, true) === 0;
      const r = lookup(iova);
      expect({ iova, read: r ? (r.permission & 1) !== 0 : false, write: r ? (r.permission & 2) !== 0 : false }).toEqual({ iova, read, write });
      if (r) {
        mapped++;
        expect(r.translatedAddress + (iova - r.iova)).toBe(walk.pageOutput + (iova % r.size));
      }
    }
    expect(mapped).toBeGreaterThan(1000);
    expect(m.device.notifiers.stats.badEntries).toBeGreaterThan(0);
  });
});
