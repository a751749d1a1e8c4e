/**
 * virtio-blk save and restore: a device's state (queues in the middle of their rings, an ISR bit
 * and INTx pending, written sectors) restored into a fresh device on the same bus reads the same
 * registers and disk and goes on serving the driver's ring; a state with a wrong field is refused
 * with the field's name and changes nothing; saving refuses while queue work waits.
 */
import { describe, expect, it } from "vitest";
import { pattern, request, rig, same, SECTORS, ST, T, type Rig } from "../../../test/support/virtio-blk-rig.ts";
import { TestDriver } from "../../../test/support/virtio-bench.ts";
import { VirtioBlkDevice } from "./virtio-blk.ts";
import type { VirtioBlkState } from "./virtio-state.ts";

/** BAR0's common configuration, ISR and device configuration, read without side effects (the ISR last). */
function registers(device: VirtioBlkDevice): number[] {
  const values: number[] = [];
  for (let offset = 0; offset < 0x38; offset += 4) values.push(device.readMmio(offset, 4));
  for (let offset = 0x2000; offset < 0x2000 + device.config.length; offset += 4) values.push(device.readMmio(offset, 4));
  return values;
}

/** A rig that has served a write and a read; the read's interrupt is not yet acknowledged. */
function busyRig(): Rig {
  const r = rig({ disk: new Uint8Array(SECTORS * 512) });
  const write = request(r, T.OUT, 5, [{ length: 1024 }], false);
  r.bench.ram.set(pattern(1024, 3), write.dataPhys[0]!);
  r.driver.notify(0);
  r.bench.run();
  expect(write.status()).toBe(ST.OK);
  r.driver.readIsr();
  request(r, T.IN, 5, [{ length: 512, write: true }]);
  r.bench.run();
  expect(r.bench.intx).toBe(true);
  return r;
}

/** A fresh device on the same bench (its RAM holds the rings), with an empty disk. */
function freshDevice(r: Rig): { blk: VirtioBlkDevice; disk: Uint8Array } {
  const disk = new Uint8Array(SECTORS * 512);
  return { blk: new VirtioBlkDevice({ port: r.bench.port, disk }), disk };
}

const clone = (state: VirtioBlkState): VirtioBlkState => ({ ...structuredClone({ ...state, disk: undefined }), disk: { ...state.disk, runs: [...state.disk.runs], data: state.disk.data.slice() } });

describe("virtio-blk: saveState and restoreState", () => {
  it("round trip: the same registers, queue indices, ISR and disk; the restored device serves the next request", () => {
    const r = busyRig();
    const state = r.blk.saveState();
    expect(state.disk.runs).toEqual([5, 2]); // only the written sectors travel
    expect(state.disk.data.length).toBe(1024);
    expect(state.transport.common.queues[0]).toMatchObject({ enabled: true, lastAvailIdx: 2, usedIdx: 2 });
    expect(state.transport.isr).toBe(1);
    expect(JSON.parse(JSON.stringify({ ...state, disk: undefined }))).toEqual({ ...state, disk: undefined }); // plain data

    const { blk, disk } = freshDevice(r);
    blk.restoreState(clone(state));
    expect(registers(blk)).toEqual(registers(r.blk));
    same(disk, r.disk);
    expect(blk.stats).toMatchObject({ requests: 2, reads: 1, writes: 1, bytesWritten: 1024 });
    expect(blk.saveState()).toEqual(state);

    // The restored device goes on with the driver's ring where the old one stopped.
    const next: Rig = { ...r, blk, disk, driver: new TestDriver(blk, r.bench) };
    expect(next.driver.readIsr()).toBe(1);
    const read = request(next, T.IN, 5, [{ length: 1024, write: true }]);
    r.bench.run();
    expect(read.status()).toBe(ST.OK);
    same(r.bench.ram.subarray(read.dataPhys[0]!, read.dataPhys[0]! + 1024), pattern(1024, 3));
    expect(next.ring.usedIdx).toBe(3);
  });

  it("restoring zeroes what the saved disk did not hold", () => {
    const r = busyRig();
    const state = r.blk.saveState();
    const { blk, disk } = freshDevice(r);
    disk.fill(0xaa);
    blk.restoreState(state);
    same(disk, r.disk);
  });

  it("refuses to save while a notified queue waits for the scheduler", () => {
    const r = rig();
    request(r, T.IN, 0, [{ length: 512, write: true }]);
    expect(() => r.blk.saveState()).toThrow(/cannot save now: 1 virtio action/);
    r.bench.run();
    expect(() => r.blk.saveState()).not.toThrow();
  });

  const bad: [string, (s: VirtioBlkState) => void, RegExp][] = [
    ["status bit", (s) => (s.transport.common.status = 0x10), /transport\.common\.status is not a device status byte/],
    ["DRIVER_OK alone", (s) => (s.transport.common.status = 0x07), /DRIVER_OK without FEATURES_OK/],
    ["features not offered", (s) => (s.transport.common.driverFeatures[0] = 0xffff_ffff), /driverFeatures accepts features this device does not offer/],
    ["queue select", (s) => (s.transport.common.queueSelect = 0x10000), /transport\.common\.queueSelect/],
    ["queue count", (s) => s.transport.common.queues.push(s.transport.common.queues[0]!), /transport\.common\.queues is not 1 queue/],
    ["queue size", (s) => (s.transport.common.queues[0]!.size = 24), /queues\[0\]\.size 24 of an enabled queue/],
    ["ring alignment", (s) => (s.transport.common.queues[0]!.areas[0] = 8), /queues\[0\]\.areas of an enabled queue are not aligned/],
    ["avail index", (s) => (s.transport.common.queues[0]!.lastAvailIdx = 70000), /queues\[0\]\.lastAvailIdx/],
    ["used index", (s) => (s.transport.common.queues[0]!.usedIdx = -1), /queues\[0\]\.usedIdx/],
    ["enabled", (s) => ((s.transport.common.queues[0] as unknown as Record<string, unknown>).enabled = 1), /queues\[0\]\.enabled is not a boolean/],
    ["ISR", (s) => (s.transport.isr = 4), /transport\.isr/],
    ["INTx", (s) => ((s.transport as unknown as Record<string, unknown>).intxAsserted = "yes"), /transport\.intxAsserted/],
    ["counter", (s) => (s.counters.reads = -1), /counters\.reads is not a count/],
    ["config", (s) => (s.config[0] = 99), /config differs/],
    ["disk size", (s) => (s.disk.bytes = 512), /disk\.bytes is 512/],
    ["overlapping runs", (s) => s.disk.runs.push(4, 1), /disk\.runs pair 1 \(4, 1\)/],
    ["run past the end", (s) => (s.disk.runs = [SECTORS - 1, 2]), /disk\.runs pair 0/],
    ["disk data", (s) => (s.disk.data = s.disk.data.subarray(1)), /disk\.data is not the runs' 1024 bytes/],
  ];
  it.each(bad)("refuses a bad %s, naming the field, and changes nothing", (_what, damage, reason) => {
    const r = busyRig();
    const state = clone(r.blk.saveState());
    damage(state);
    const { blk, disk } = freshDevice(r);
    disk.set(pattern(disk.length, 5));
    const before = blk.saveState();
    const registersBefore = registers(blk);
    expect(() => blk.restoreState(state)).toThrow(reason);
    expect(blk.checkState(state)).toMatch(reason);
    expect(blk.saveState()).toEqual(before);
    expect(registers(blk)).toEqual(registersBefore);
    same(disk, pattern(disk.length, 5));
  });

  it("refuses what is not a state at all", () => {
    const r = rig();
    expect(r.blk.checkState(null)).toBe("the state is not an object");
    expect(r.blk.checkState({})).toBe("transport is missing");
  });
});
