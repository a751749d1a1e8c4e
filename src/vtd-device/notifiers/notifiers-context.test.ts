/**
 * IOMMU notifiers and context-level changes: context-cache invalidation, the root table (SRTP),
 * translation enable and reset unmap everything and replay; pass-through is one identity MAP.
 */
import { describe, expect, it } from "vitest";
import { Gcmd, Reg } from "../../spec/registers.ts";
import { enableTranslation, machine, R, W } from "../../../test/support/tables.ts";
import { MAP, UNMAP, SID, OTHER, K4, M2, WHOLE, dsi, contextDevice, contextGlobal, collector, mapEvent, UNMAP_ALL, unit } from "../../../test/support/notifier-rig.ts";

describe("context invalidation, root table, translation enable", () => {
  it("context invalidation, TE off, TE on and SRTP (with ESRTPS, or followed by the global invalidation): unmap everything, then replay (TE off: one identity MAP)", () => {
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
    expect(c.take()).toEqual([]); // CAP.ESRTPS = 0: SRTP invalidates nothing
    contextGlobal(m);
    expect(c.take()).toEqual([UNMAP_ALL, ...replayed]);
    // A new root table without this device: unmap everything, nothing to replay.
    m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.page()));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE | Gcmd.SRTP);
    contextGlobal(m);
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
