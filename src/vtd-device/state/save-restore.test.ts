/**
 * Save and restore: a unit saved at a random point of a seeded workload and restored into a
 * fresh unit over a copy of RAM behaves exactly as the original for the rest of the workload
 * (every DMA result and byte, register read, interrupt, fault record, trace event, counter, and
 * the final state and RAM); what was stale in the caches stays stale.
 */
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { Reg } from "../../spec/registers.ts";
import { machine, type Machine } from "../../../test/support/tables.ts";
import { desc } from "../../../test/support/queue.ts";
import { clearQueueErrors, run, setUp, steps, submit, twin, WORKLOAD_OPTIONS } from "../../../test/support/unit-workload.ts";
import { mulberry32 } from "../../../test/support/vfio-workload.ts";
import { VtdDevice } from "../device.ts";
import { GuestRam } from "../memory/guest-memory.ts";

const STEPS = 600;

function sameRam(a: Machine, b: Machine): boolean {
  return Buffer.compare(a.ram.direct, b.ram.direct) === 0;
}

describe("save and restore", () => {
  for (const [seed, extra] of [[1, {}], [2, { queueDescriptorTimeMs: 0.5 }], [3, { deviceIotlbLatencyMs: 7, queueWorkBudget: 6 }], [4, {}], [5, { queueDescriptorTimeMs: 1 }]] as const) {
    it(`seed ${seed}: the restored unit runs the rest of the workload exactly as the original ${JSON.stringify(extra)}`, () => {
      const options = { ...WORKLOAD_OPTIONS, ...extra };
      const { m: a, world } = setUp(options);
      const list = steps(seed, STEPS);
      const cut = 50 + Math.floor(mulberry32(seed * 7919)() * (STEPS - 100));
      run(a, world, list.slice(0, cut));
      const text = JSON.stringify(a.device.saveState());
      const b = twin(a, options);
      b.device.restoreState(JSON.parse(text));
      expect(JSON.stringify(b.device.saveState())).toBe(text);
      // The workload got somewhere: caches hold entries, faults were met, device-TLB work was queued.
      expect(a.device.stats.faultsRecorded + a.device.stats.faultsDropped + a.device.stats.faultsSuppressed).toBeGreaterThan(0);
      expect(a.device.stats.deviceIotlbInvalidations).toBeGreaterThan(0);
      expect(a.device.cacheOccupancy.iotlbEntries).toBeGreaterThan(0);

      const logA = run(a, world, list.slice(cut));
      const logB = run(b, world, list.slice(cut));
      expect(logB.length).toBeGreaterThan(20);
      expect(logB).toEqual(logA);
      expect(b.device.stats).toEqual(a.device.stats);
      // The breakdown counters (by kind, by requester id, by reason) travel in the snapshot too.
      expect(b.device.counters).toEqual(a.device.counters);
      expect(b.device.counters.iotlbMissesBySid.size).toBeGreaterThan(0);
      expect(b.device.now).toBe(a.device.now);
      expect(sameRam(a, b)).toBe(true);
      expect(JSON.stringify(b.device.saveState())).toBe(JSON.stringify(a.device.saveState()));
    });
  }

  it("some workload snapshot holds outstanding device-TLB invalidations and they complete after restore", () => {
    const { m: a, world } = setUp({ ...WORKLOAD_OPTIONS, deviceIotlbLatencyMs: 50 });
    run(a, world, steps(11, 200));
    for (let i = 0; i < 20 && (a.device.readRegister(Reg.FSTS, 4) & 0x50n) !== 0n; i++) {
      clearQueueErrors(a);
      submit(a);
    }
    expect(a.device.readRegister(Reg.FSTS, 4) & 0x50n).toBe(0n);
    submit(a, desc.deviceTlb(0x18, 0x1000_0000n), desc.wait({ sw: true, data: 0x5a5a, address: 0x90_0100n }));
    const snapshot = a.device.saveState();
    expect(snapshot.queue.pending.entries.length).toBeGreaterThan(0);
    const b = twin(a, { ...WORKLOAD_OPTIONS, deviceIotlbLatencyMs: 50 });
    b.device.restoreState(JSON.stringify(snapshot));
    expect(b.ram.read32(0x90_0100)).not.toBe(0x5a5a);
    for (let t = 0; t < 300 && b.ram.read32(0x90_0100) !== 0x5a5a; t += 10) b.device.advanceTime(10), a.device.advanceTime(10);
    expect(b.ram.read32(0x90_0100)).toBe(0x5a5a);
    expect(a.ram.read32(0x90_0100)).toBe(0x5a5a);
    expect(sameRam(a, b)).toBe(true);
  });

  it("a CM negative IOTLB entry survives restore and keeps faulting until invalidated", () => {
    const options = { cachingMode: true };
    const a = machine(options);
    const root = a.tables.context(0x08, { did: 5 });
    const leaf = a.tables.map(root, 3, 0x4000, 0, 0n); // tables down to the leaf, leaf not present
    a.device.writeRegister(Reg.RTADDR, 8, BigInt(a.tables.root));
    a.device.writeRegister(Reg.GCMD, 4, 1n << 30n);
    a.device.writeRegister(Reg.GCMD, 4, 1n << 31n);
    expect(a.device.dmaRead(0x08, 0x4000, new Uint8Array(4)).ok).toBe(false); // cached as a negative entry (CM = 1)
    a.ram.write64(leaf, 0x7000n | 3n); // mapped now, not invalidated
    a.ram.write32(0x7000, 0xcafe);
    const text = JSON.stringify(a.device.saveState());

    const fresh = twin(a, options);
    fresh.device.restoreState(text);
    const bytes = new Uint8Array(4);
    expect(fresh.device.dmaRead(0x08, 0x4000, bytes).ok).toBe(false); // still the stale negative entry
    // A unit whose caches were empty would see the new mapping: the test depends on the cached entry.
    const cold = twin(a, options);
    cold.device.writeRegister(Reg.RTADDR, 8, BigInt(a.tables.root));
    cold.device.writeRegister(Reg.GCMD, 4, 1n << 30n);
    cold.device.writeRegister(Reg.GCMD, 4, 1n << 31n);
    expect(cold.device.dmaRead(0x08, 0x4000, new Uint8Array(4)).ok).toBe(true);
    // The page-selective invalidation the guest owes makes it visible.
    fresh.device.writeRegister(0xf0, 8, 0x4000n);
    fresh.device.writeRegister(0xf8, 8, (1n << 63n) | (3n << 60n) | (5n << 32n));
    expect(fresh.device.dmaRead(0x08, 0x4000, bytes).ok).toBe(true);
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(0xcafe);
  });

  it("restore keeps host registrations: trace listeners, onInterrupt, notifiers (resynced)", () => {
    const { m: a, world } = setUp();
    run(a, world, steps(21, 150));
    const text = JSON.stringify(a.device.saveState());
    const b = twin(a);
    const events: unknown[] = [];
    b.device.notifiers.addressSpace(0x08).register((e) => events.push(e), { events: 3 });
    const before = events.length;
    b.device.restoreState(text);
    expect(events.length).toBeGreaterThan(before); // the UNMAP of the whole space at least
    expect(b.device.notifiers.addressSpace(0x08).notifierCount).toBe(1);
  });

  it("reports the snapshot size and save/restore time for default options with populated caches", () => {
    const empty = JSON.stringify(new VtdDevice({ memory: new GuestRam(1 << 20) }).saveState());
    // Default options; 256 requester ids share one domain's tables, 4096 pages mapped and used.
    const m = machine();
    const root = m.tables.context(0, { did: 1 });
    for (let sid = 1; sid < 256; sid++) m.tables.context(sid, { did: 1, tableRoot: root });
    for (let p = 0; p < 4096; p++) m.tables.map(root, 3, p * 4096, 0x100_0000 + p * 4096, 3n);
    m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.root));
    m.device.writeRegister(Reg.GCMD, 4, 1n << 30n);
    m.device.writeRegister(Reg.GCMD, 4, 1n << 31n);
    for (let p = 0; p < 4096; p++) expect(m.device.dmaRead(p & 0xff, p * 4096, new Uint8Array(8)).ok).toBe(true);
    const { iotlbEntries, contextEntries } = m.device.cacheOccupancy;
    expect(contextEntries).toBe(256);
    expect(iotlbEntries).toBeGreaterThan(3000);
    const target = twin(m, {});
    const json = JSON.stringify(m.device.saveState());
    for (let i = 0; i < 5; i++) target.device.restoreState(JSON.stringify(m.device.saveState())); // warm up
    const rounds = 20;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) JSON.stringify(m.device.saveState());
    const t1 = performance.now();
    for (let i = 0; i < rounds; i++) target.device.restoreState(json);
    const t2 = performance.now();
    expect(JSON.stringify(target.device.saveState())).toBe(json);
    console.log(`snapshot, default options: empty ${empty.length} bytes JSON (${gzipSync(empty).length} gzip); ` +
      `populated (${iotlbEntries} IOTLB, ${contextEntries} context entries) ${json.length} bytes JSON (${gzipSync(json).length} gzip); ` +
      `saveState + JSON.stringify ${((t1 - t0) / rounds).toFixed(2)} ms, restoreState from JSON text ${((t2 - t1) / rounds).toFixed(2)} ms`);
    expect(json.length).toBeLessThan(1 << 20);
  });
});
