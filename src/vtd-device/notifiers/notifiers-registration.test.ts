/**
 * IOMMU notifiers: registration (caching mode, bad input from the embedder, listener callbacks)
 * and device-TLB invalidations reaching DEVIOTLB_UNMAP listeners.
 */
import { describe, expect, it } from "vitest";
import { machine } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";
import { NotifierError, type IommuNotifier } from "./notifier-types.ts";
import { MAP, UNMAP, DEVIOTLB_UNMAP, SID, OTHER, WHOLE, collector, unit } from "../../../test/support/notifier-rig.ts";

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
