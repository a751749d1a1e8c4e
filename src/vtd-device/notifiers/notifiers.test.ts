/**
 * IOMMU notifiers on the unit alone (tables built by test/support/tables.ts, invalidations by
 * register or queue): what each invalidation reports, to whom, at what cost in entries walked,
 * and how bad input and bad tables are handled.
 */
import { describe, expect, it } from "vitest";
import { Gcmd, Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W, type Machine } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";
import { walkConfig } from "../registers/capabilities.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import { NotifierError, NotifierFlag, type IommuEvent, type IommuNotifier } from "./notifier-types.ts";
import { accessFault, PageWalk, walkPages } from "../translation/walk.ts";

const { MAP, UNMAP, DEVIOTLB_UNMAP } = NotifierFlag;
const SID = 0x20, OTHER = 0x28;
const IVA = 0xf0, IOTLB = 0xf8;
const K4 = 0x1000, M2 = 2 ** 21, G1 = 2 ** 30, WHOLE = 2 ** 48;

function psi(m: Machine, did: number, address: number, am = 0): void {
  m.device.writeRegister(IVA, 8, BigInt(address) | BigInt(am));
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (3n << 60n) | (BigInt(did) << 32n));
}
function dsi(m: Machine, did: number): void {
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (2n << 60n) | (BigInt(did) << 32n));
}
function iotlbGlobal(m: Machine): void {
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (1n << 60n));
}
function contextDevice(m: Machine, sid: number): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (3n << 61n) | (BigInt(sid) << 16n));
}

interface Seen { type: number; iova: number; translatedAddress: number; addressMask: number; permission: number }
function collector(): { notify: IommuNotifier; seen: Seen[]; take(): Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    notify: (e: IommuEvent) => seen.push({ type: e.type, iova: e.iova, translatedAddress: e.translatedAddress, addressMask: e.addressMask, permission: e.permission }),
    take: () => seen.splice(0),
  };
}
const mapEvent = (iova: number, out: number, size: number, permission = 3): Seen => ({ type: MAP, iova, translatedAddress: out, addressMask: size - 1, permission });
const unmapEvent = (iova: number, out: number, size: number): Seen => ({ type: UNMAP, iova, translatedAddress: out, addressMask: size - 1, permission: 0 });
const UNMAP_ALL: Seen = unmapEvent(0, 0, WHOLE);

/** A CM = 1 unit, 48-bit, SID in domain 1 with 4-level tables, translation on. */
function unit(options: Parameters<typeof machine>[0] = {}) {
  const m = machine({ awBits: 48, cachingMode: true, ...options });
  const root = m.tables.context(SID, { did: 1, aw: 2 });
  enableTranslation(m);
  return { m, root, space: m.device.notifiers.addressSpace(SID), stats: m.device.notifiers.stats };
}

describe("notifier registration", () => {
  it("a MAP notifier is refused while CAP.CM = 0, naming the device; UNMAP and DEVIOTLB_UNMAP are not", () => {
    const m = machine({ cachingMode: false });
    const space = m.device.notifiers.addressSpace(SID);
    let error: unknown;
    try {
      space.register(() => {}, { events: MAP | UNMAP });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NotifierError);
    expect((error as NotifierError).code).toBe("caching-mode-required");
    expect((error as Error).message).toMatch(/^device 00:04\.0 requires caching mode/);
    expect(space.notifierCount).toBe(0);
    expect(m.device.notifiers.active).toBe(false);
    space.register(() => {}, { events: UNMAP | DEVIOTLB_UNMAP });
    expect(space.notifierCount).toBe(1);
  });

  it("the unsafe option lets a MAP notifier register with CM = 0; a bad value for it is an error naming it", () => {
    const m = machine({ cachingMode: false, allowMapNotifiersWithoutCachingMode: true });
    m.device.notifiers.addressSpace(SID).register(() => {}, { events: MAP });
    expect(m.device.notifiers.active).toBe(true);
    expect(() => machine({ allowMapNotifiersWithoutCachingMode: "yes" as unknown as boolean })).toThrow(/option allowMapNotifiersWithoutCachingMode/);
  });

  it("bad input from the embedder: clear errors with codes", () => {
    const { m, space } = unit();
    const n = () => {};
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as NotifierError).code}: ${(e as Error).message}`;
      }
      return "no error";
    };
    space.register(n, { events: MAP });
    expect(code(() => space.register(n, { events: UNMAP }))).toMatch(/^already-registered: device 00:04\.0/);
    expect(code(() => space.unregister(() => {}))).toMatch(/^not-registered/);
    expect(code(() => space.replay(() => {}))).toMatch(/^not-registered/);
    expect(code(() => space.register(() => {}, { events: 0 }))).toMatch(/^bad-events/);
    expect(code(() => space.register(() => {}, { events: 8 }))).toMatch(/^bad-events/);
    expect(code(() => space.register(() => {}, { events: UNMAP, range: { start: 0, end: WHOLE + 1 } }))).toMatch(/^bad-range: .*48-bit address width/);
    expect(code(() => space.register(() => {}, { events: UNMAP, range: { start: 0n, end: 2n ** 49n } }))).toMatch(/^bad-range/);
    expect(code(() => space.register(() => {}, { events: UNMAP, range: { start: 0x2000, end: 0x1000 } }))).toMatch(/^bad-range: .*empty/);
    expect(code(() => space.register(() => {}, { events: UNMAP, range: { start: -1, end: 0x1000 } }))).toMatch(/^bad-range/);
    expect(code(() => space.register("x" as unknown as IommuNotifier, { events: UNMAP }))).toMatch(/^bad-argument/);
    expect(code(() => m.device.notifiers.addressSpace(0x10000))).toMatch(/^bad-argument/);
    // A 39-bit unit: the range limit follows the address width.
    const narrow = machine({ awBits: 39, cachingMode: true });
    expect(code(() => narrow.device.notifiers.addressSpace(SID).register(() => {}, { events: UNMAP, range: { start: 0, end: 2 ** 40 } }))).toMatch(/39-bit/);
    // Failed registrations left nothing behind; the good one is still there.
    expect(space.notifierCount).toBe(1);
    space.unregister(n);
    expect(space.notifierCount).toBe(0);
  });

  it("first- and last-listener callbacks per address space", () => {
    const { m, space } = unit();
    const calls: string[] = [];
    m.device.notifiers.onFirstListener = (s) => calls.push(`first ${s.name}`);
    m.device.notifiers.onLastListener = (s) => calls.push(`last ${s.name}`);
    const a = () => {}, b = () => {};
    space.register(a, { events: MAP | UNMAP });
    space.register(b, { events: DEVIOTLB_UNMAP });
    space.unregister(a);
    expect(m.device.notifiers.active).toBe(true);
    space.unregister(b);
    expect(calls).toEqual(["first 00:04.0", "last 00:04.0"]);
    expect(m.device.notifiers.active).toBe(false);
  });
});

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

describe("context invalidation, root table, translation enable", () => {
  it("context invalidation, TE off, TE on and SRTP: unmap everything, then replay (TE off: one identity MAP)", () => {
    const { m, root, space } = unit();
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, 4, 0x20_0000, 0x40_0000, R, 2);
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    space.replay(c.notify);
    const replayed = [mapEvent(0x1000, 0x20_0000, K4), mapEvent(0x20_0000, 0x40_0000, M2, 1)];
    expect(c.take()).toEqual(replayed);
    contextDevice(m, SID);
    expect(c.take()).toEqual([UNMAP_ALL, ...replayed]);
    contextDevice(m, OTHER); // another device: nothing
    expect(c.take()).toEqual([]);
    m.device.writeRegister(Reg.GCMD, 4, 0n); // TE off
    expect(c.take()).toEqual([UNMAP_ALL, mapEvent(0, 0, WHOLE)]);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
    expect(c.take()).toEqual([UNMAP_ALL, ...replayed]);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    expect(c.take()).toEqual([UNMAP_ALL, ...replayed]);
    // A new root table without this device: unmap everything, nothing to replay.
    m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.page()));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    expect(c.take()).toEqual([UNMAP_ALL]);
    contextDevice(m, SID);
    expect(c.take()).toEqual([]); // nothing was mapped: no UNMAP
  });

  it("a context entry changed without a context invalidation is not seen (the unit's context cache); with one it is", () => {
    const { m, space } = unit();
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    const other = m.tables.page();
    m.tables.map(other, 4, 0x1000, 0x20_0000, R | W);
    m.tables.context(SID, { did: 5, aw: 2, tableRoot: other });
    dsi(m, 5);
    expect(c.take()).toEqual([]);
    contextDevice(m, SID);
    expect(c.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4)]);
    dsi(m, 5);
    expect(c.take()).toEqual([]);
  });

  it("a pass-through context is one identity MAP of the address width; reset keeps the notifiers (TE off: identity)", () => {
    const m = machine({ awBits: 48, cachingMode: true });
    m.tables.context(SID, { did: 1, aw: 2, tt: 2 });
    enableTranslation(m);
    const space = m.device.notifiers.addressSpace(SID);
    const c = collector();
    space.register(c.notify, { events: MAP | UNMAP });
    expect(space.replay(c.notify)).toBe(1);
    expect(c.take()).toEqual([mapEvent(0, 0, WHOLE)]);
    m.device.reset();
    expect(c.take()).toEqual([UNMAP_ALL, mapEvent(0, 0, WHOLE)]);
    expect(space.notifierCount).toBe(1);
  });
});

describe("device-TLB invalidation", () => {
  it("reaches DEVIOTLB_UNMAP listeners of that requester id only, with its size", () => {
    const { m } = unit({ deviceIotlb: true });
    const q = new Queue(m).enable();
    const mine = collector(), other = collector(), maps = collector();
    m.device.notifiers.addressSpace(SID).register(mine.notify, { events: DEVIOTLB_UNMAP });
    m.device.notifiers.addressSpace(SID).register(maps.notify, { events: MAP | UNMAP });
    m.device.notifiers.addressSpace(OTHER).register(other.notify, { events: DEVIOTLB_UNMAP });
    // S = 1 with address bits 12..14 set: the lowest clear bit is 15, a 64 KiB range.
    q.submit(desc.deviceTlb(SID, 0x4000_7000n, true), desc.deviceTlb(SID, 0x9000n));
    expect(mine.take()).toEqual([
      { type: DEVIOTLB_UNMAP, iova: 0x4000_0000, translatedAddress: 0, addressMask: 0xffff, permission: 0 },
      { type: DEVIOTLB_UNMAP, iova: 0x9000, translatedAddress: 0, addressMask: 0xfff, permission: 0 },
    ]);
    // Everything (bits 62:12 set): clipped to the address width.
    q.submit(desc.deviceTlb(SID, 0x7fff_ffff_ffff_f000n, true));
    expect(mine.take()).toEqual([{ type: DEVIOTLB_UNMAP, iova: 0, translatedAddress: 0, addressMask: WHOLE - 1, permission: 0 }]);
    expect(other.seen).toEqual([]);
    expect(maps.seen).toEqual([]);
    expect(m.device.notifiers.stats.deviceIotlbUnmapEvents).toBe(3);
    expect(m.device.stats.deviceIotlbInvalidations).toBe(3);
  });
});

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

describe("aliased tables (a guest that maps 2^48 bytes with four pages)", () => {
  /** Every entry of levels 4..2 points at the same next table; the last table holds 512 4K leaves. */
  function aliasEverything(m: Machine, root: number): void {
    const l3 = m.tables.page(), l2 = m.tables.page(), l1 = m.tables.page();
    for (let i = 0; i < 512; i++) {
      m.ram.write64(root + i * 8, BigInt(l3) | R | W);
      m.ram.write64(l3 + i * 8, BigInt(l2) | R | W);
      m.ram.write64(l2 + i * 8, BigInt(l1) | R | W);
      m.ram.write64(l1 + i * 8, BigInt(0x20_0000 + (i % 16) * K4) | R | W);
    }
  }

  it("a sync stops at notifierTableLimit: the space is unmapped whole, the embedder told, and mirrored again once its tables fit", () => {
    const limit = 64;
    const { m, root, space, stats } = unit({ notifierTableLimit: limit });
    const c = collector();
    const limited: [number, number][] = [];
    m.device.notifiers.onWalkLimit = (s, tables) => limited.push([s.sid, tables]);
    space.register(c.notify, { events: MAP | UNMAP });
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    psi(m, 1, 0x1000);
    expect(c.take()).toEqual([mapEvent(0x1000, 0x20_0000, K4)]);

    aliasEverything(m, root);
    dsi(m, 1);
    expect(limited).toEqual([[SID, limit]]);
    expect(stats.walkLimitHits).toBe(1);
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

  it("the default limit keeps a fully aliased 4-level space to one bounded walk; a bad limit is an error naming it", () => {
    const { m, root, space, stats } = unit();
    space.register(() => {}, { events: MAP | UNMAP });
    aliasEverything(m, root);
    contextDevice(m, SID);
    expect(stats.walkLimitHits).toBe(1);
    expect(stats.entriesWalked).toBeLessThanOrEqual(4097 * 512);
    expect(() => machine({ notifierTableLimit: 0 })).toThrow(/option notifierTableLimit/);
  });
});
