import { describe, expect, it } from "vitest";
import { desc, Queue } from "../../test/support/queue.ts";
import { enableTranslation, machine, R } from "../../test/support/tables.ts";
import { difference, totalInvalidations, UnitCounts } from "./unit-counts.ts";

describe("UnitCounts", () => {
  it("snapshots the unit's counters without listening to its trace, and subtracts them", () => {
    const m = machine({ awBits: 39 });
    const counts = new UnitCounts(m.device);
    expect(m.device.trace.active).toBe(false);
    const root = m.tables.context(0x20, { did: 1 });
    m.tables.map(root, 3, 0, 0x20_0000, R);
    enableTranslation(m);
    const before = counts.snapshot();
    m.device.dmaRead(0x20, 0, new Uint8Array(4));
    m.device.dmaWrite(0x20, 0, new Uint8Array(4));
    new Queue(m).enable().submit(desc.iotlbPage(1, 0n), desc.iotlbPage(1, 0x1000n));
    const d = difference(counts.snapshot(), before);
    expect(m.device.trace.active).toBe(false);
    expect(d.translations).toBe(2);
    expect(d.iotlbMissesBySid).toEqual(new Map([[0x20, 1]]));
    expect(d.faultsBySid).toEqual(new Map([[0x20, 1]]));
    expect(d.invalidations).toEqual(new Map([["iotlb page (queue)", 2]]));
    expect(totalInvalidations(d)).toBe(2);
  });
});
