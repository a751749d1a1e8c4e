/**
 * One tail write costs the host a bounded amount of work (queueWorkBudget): past it the queue
 * pauses before the next descriptor and goes on as the unit's clock moves, as hardware takes time
 * over a long queue. A driver that waits for its wait descriptor sees it complete, later.
 */
import { describe, expect, it } from "vitest";
import { enableTranslation, machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";

const STATUS = 0x9000;

describe("the queue's work budget", () => {
  it("a budget of 10 units takes 10 descriptors per step; the rest follows the clock, in order", () => {
    const m = machine({ queueWorkBudget: 10 });
    const q = new Queue(m, 0x80_0000, 0).enable();
    const waits = Array.from({ length: 50 }, () => desc.iotlbGlobal());
    q.submit(...waits, desc.wait({ sw: true, data: 7, address: BigInt(STATUS) }));
    expect(q.head).toBe(10);
    expect(m.device.stats.queueBudgetPauses).toBe(1);
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(1); // one budget at the paused instant, one at the new time
    expect(q.head).toBe(30);
    m.device.advanceTime(1);
    m.device.advanceTime(1);
    expect(q.head).toBe(51);
    expect(m.ram.read32(STATUS)).toBe(7);
    expect(m.device.stats.descriptorsProcessed).toBe(51);
  });

  it("a new tail write goes on with a fresh budget", () => {
    const m = machine({ queueWorkBudget: 5 });
    const q = new Queue(m).enable();
    q.submit(...Array.from({ length: 8 }, () => desc.iotlbGlobal()));
    expect(q.head).toBe(5);
    q.submit(desc.iotlbGlobal());
    expect(q.head).toBe(9);
  });

  it("32,767 page-selective descriptors over a populated IOTLB: one tail write stops at the default budget, and the queue drains as time moves", () => {
    const m = machine();
    const root = m.tables.context(0x18, { did: 1 });
    for (let i = 0; i < 64; i++) m.tables.map(root, 3, 0x4000_0000 + i * 4096, 0x20_0000 + i * 4096, R | W);
    enableTranslation(m);
    for (let i = 0; i < 64; i++) expect(m.device.dmaRead(0x18, 0x4000_0000 + i * 4096, new Uint8Array(4)).ok).toBe(true);
    const q = new Queue(m, 0x100_0000, 7).enable();
    // AM = 9 pages far from the cached ones: each scans the IOTLB and drops nothing.
    const descriptors = Array.from({ length: q.entries - 2 }, (_, i) => desc.iotlbPage(1, 0x80_0000_0000n + BigInt(i) * 0x20_0000n, 9));
    q.submit(...descriptors, desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    const afterTailWrite = q.head;
    expect(afterTailWrite).toBeGreaterThan(0);
    expect(afterTailWrite).toBeLessThan(q.entries - 1);
    // Each step is bounded too; a driver polling its status word sees it after a bounded number of steps.
    let steps = 0;
    while (m.ram.read32(STATUS) !== 1 && steps < 100) {
      const before = q.head;
      m.device.advanceTime(0.001);
      expect((q.head - before + q.entries) % q.entries).toBeLessThanOrEqual(2 * afterTailWrite + 2);
      steps++;
    }
    expect(m.ram.read32(STATUS)).toBe(1);
    expect(q.head).toBe(q.entries - 1);
    // The cached translations were never covered and still hit.
    expect(m.device.dmaRead(0x18, 0x4000_0000, new Uint8Array(4)).ok).toBe(true);
  });
});
