import { describe, expect, it } from "vitest";
import { PendingDeviceTlbInvalidations } from "./pending-device-tlb.ts";
import { machine, enableTranslation, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";

describe("outstanding device-TLB invalidations: a bounded heap in time order", () => {
  it("gives them back by due time, in the order sent when due together", () => {
    const p = new PendingDeviceTlbInvalidations(8);
    p.push(1, 0, 1, 50, false);
    p.push(2, 0, 1, 10, false);
    p.push(3, 0, 1, 50, true);
    p.push(4, 0, 1, 10, false);
    const order: number[] = [];
    while (p.length > 0) {
      order.push(p.nextSid);
      p.shift();
    }
    expect(order).toEqual([2, 4, 1, 3]);
    expect(p.nextDue).toBe(Infinity);
  });

  it("agrees with a sorted list under random pushes and shifts, and never holds more than its limit", () => {
    let seed = 7;
    const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const p = new PendingDeviceTlbInvalidations(32);
    const model: { due: number; order: number; sid: number }[] = [];
    let sent = 0;
    for (let step = 0; step < 50_000; step++) {
      if (!p.full && random(3) !== 0) {
        const due = random(100), sid = sent & 0xffff;
        p.push(sid, 0, 4096, due, false);
        model.push({ due, order: sent++, sid });
        model.sort((a, b) => a.due - b.due || a.order - b.order);
      } else if (p.length > 0) {
        expect([p.nextDue, p.nextSid]).toEqual([model[0]!.due, model[0]!.sid]);
        p.shift();
        model.shift();
      }
      expect(p.length).toBe(model.length);
      expect(p.length).toBeLessThanOrEqual(32);
    }
  });

  it("an endpoint whose latency is shortened while one is outstanding answers in time order", () => {
    const m = machine({ deviceIotlb: true, deviceIotlbLatencyMs: 5_000 });
    const root = m.tables.context(0x20, { did: 1, tt: 1, aw: 2 });
    enableTranslation(m);
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.tables.map(root, 4, 0x2000, 0x20_0000, R | W);
    for (const iova of [0x1000n, 0x2000n]) m.device.dmaRead(0x20, iova, new Uint8Array(1));
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(0x20, 0x1000n));
    m.device.options.deviceIotlbLatencyMs = 10;
    q.submit(desc.deviceTlb(0x20, 0x2000n));
    m.device.advanceTime(10);
    expect(m.device.deviceTlbs.lookup(0x20, 0x2000)).toBeUndefined(); // answered at 10 ms
    expect(m.device.deviceTlbs.lookup(0x20, 0x1000)).toBeDefined(); // still waiting for 5 s
    m.device.advanceTime(4_990);
    expect(m.device.deviceTlbs.entries(0x20)).toBe(0);
  });
});
