import { describe, expect, it } from "vitest";
import { GuestRam, SnapshotError, VtdDevice } from "../index.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { R, W } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";

const SID = 0x0018;

function scalableUnit(ram: GuestRam) {
  return new VtdDevice({ memory: ram, scalableMode: true, pasidBits: 4 });
}

describe("save and restore of a scalable-mode unit", () => {
  it("a restored unit translates through the latched scalable-mode tables, with its caches refilled from memory", () => {
    const ram = new GuestRam(32 << 20);
    const device = scalableUnit(ram);
    const tables = new ScalableTables(ram);
    const dir = tables.smContext(SID, { pasidEnable: true });
    const ss = tables.pasidEntry(dir, 0, { aw: 2, did: 4 });
    tables.map(ss, 4, 0x7000, 0x80_0000, R | W);
    ram.direct[0x80_0010] = 0x5c;
    enableScalable({ ram, device, tables, interrupts: [] }, tables.root);
    const into = new Uint8Array(1);
    expect(device.dmaRead(SID, 0x7010, into, { pasid: 0 })).toEqual({ ok: true });
    const snapshot = JSON.stringify(device.saveState());
    const twin = scalableUnit(ram);
    twin.restoreState(snapshot);
    into[0] = 0;
    expect(twin.dmaRead(SID, 0x7010, into)).toEqual({ ok: true });
    expect(into[0]).toBe(0x5c);
    // Its caches start empty: a PASID entry cleared in memory is seen at once.
    ram.write64(tables.pasidEntryAt(dir, 0), 0n);
    const again = scalableUnit(ram);
    again.restoreState(snapshot);
    expect(again.dmaRead(SID, 0x7010, into)).toEqual({ ok: false, reason: FaultReason.PasidEntryNotPresent });
  });

  it("a snapshot of another scalable-mode configuration is refused, naming the option", () => {
    const ram = new GuestRam(1 << 20);
    const legacy = new VtdDevice({ memory: ram });
    expect(() => scalableUnit(ram).restoreState(legacy.saveState())).toThrow(SnapshotError);
    expect(() => scalableUnit(ram).restoreState(legacy.saveState())).toThrow(/scalableMode/);
    expect(() => legacy.restoreState(scalableUnit(ram).saveState())).toThrow(/scalableMode true \(snapshot\) vs false/);
    expect(legacy.saveState().configuration).not.toHaveProperty("scalableMode");
    const wider = new VtdDevice({ memory: ram, scalableMode: true, pasidBits: 8 });
    expect(() => scalableUnit(ram).restoreState(wider.saveState())).toThrow(/pasidBits/);
  });
});
