import { describe, expect, it } from "vitest";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { Fsts, Reg } from "../../spec/registers.ts";
import { iec, irMachine, irte, remappable } from "../../../test/support/interrupt-remapping.ts";
import { machine } from "../../../test/support/tables.ts";
import { Queue } from "../../../test/support/queue.ts";
import type { TraceEvent } from "../trace.ts";

const EDU = 0x20;

describe("the interrupt entry cache and its invalidation descriptor (VT-d §6.5.2.7)", () => {
  it("a present IRTE is cached: changing it without an invalidation still gives the old message; a global IEC invalidation fixes it", () => {
    const m = irMachine();
    m.writeIrte(3, irte({ vector: 0x30 }));
    expect(m.send(EDU, remappable(3))).toMatchObject({ data: 0x4030 });
    m.writeIrte(3, irte({ vector: 0x31 }));
    expect(m.send(EDU, remappable(3))).toMatchObject({ data: 0x4030 });
    expect(m.device.stats.interruptEntryCacheHits).toBe(1);
    m.queue.submit(iec.global());
    expect(m.send(EDU, remappable(3))).toMatchObject({ data: 0x4031 });
  });

  it("CM = 0: a not-present IRTE is not cached, so making it present needs no invalidation", () => {
    const m = irMachine({ cachingMode: false });
    expect(m.send(EDU, remappable(5))).toEqual({ ok: false, reason: FaultReason.IrteNotPresent });
    m.writeIrte(5, irte({ vector: 0x55 }));
    expect(m.send(EDU, remappable(5))).toMatchObject({ ok: true, data: 0x4055 });
  });

  it("CM = 1: a not-present IRTE may be cached; a guest that skips the IEC invalidation after making it present sees the fault", () => {
    const m = irMachine({ cachingMode: true });
    expect(m.send(EDU, remappable(5))).toEqual({ ok: false, reason: FaultReason.IrteNotPresent });
    m.writeIrte(5, irte({ vector: 0x55 }));
    expect(m.send(EDU, remappable(5))).toEqual({ ok: false, reason: FaultReason.IrteNotPresent });
    m.queue.submit(iec.index(5));
    expect(m.send(EDU, remappable(5))).toMatchObject({ ok: true, data: 0x4055 });
  });

  it("CM = 1 with negativeCaching off behaves like CM = 0 (as QEMU)", () => {
    const m = irMachine({ cachingMode: true, negativeCaching: false });
    m.send(EDU, remappable(5));
    m.writeIrte(5, irte({ vector: 0x55 }));
    expect(m.send(EDU, remappable(5)).ok).toBe(true);
  });

  it("CM = 1 caches an erroneous IRTE (reserved bit) too; FPD comes from the cached entry", () => {
    const m = irMachine({ cachingMode: true });
    m.writeIrte(6, irte({ fpd: true, lo: 1n << 12n }));
    expect(m.send(EDU, remappable(6))).toEqual({ ok: false, reason: FaultReason.IrteReserved });
    m.writeIrte(6, irte({ vector: 0x66 }));
    expect(m.send(EDU, remappable(6))).toEqual({ ok: false, reason: FaultReason.IrteReserved });
    expect(m.device.stats.faultsSuppressed).toBe(2);
    m.queue.submit(iec.global());
    expect(m.send(EDU, remappable(6)).ok).toBe(true);
  });

  it("index-selective: IIDX with IM covers the 2^IM entries of its aligned block, nothing else", () => {
    const m = irMachine();
    for (let i = 0; i < 16; i++) m.writeIrte(i, irte({ vector: 0x10 + i }));
    for (let i = 0; i < 16; i++) m.send(EDU, remappable(i));
    for (let i = 0; i < 16; i++) m.writeIrte(i, irte({ vector: 0x80 + i }));
    const events: TraceEvent[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_inv_iec") events.push(e); });
    m.queue.submit(iec.index(6, 2)); // IIDX 6, IM 2: entries 4..7
    expect(events).toEqual([{ type: "vtd_inv_iec", granularity: "index", index: 6, mask: 2, dropped: 4 }]);
    const vectors = Array.from({ length: 16 }, (_, i) => {
      const r = m.send(EDU, remappable(i));
      return r.ok ? r.data & 0xff : -1;
    });
    expect(vectors).toEqual([0x10, 0x11, 0x12, 0x13, 0x84, 0x85, 0x86, 0x87, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f]);
  });

  it("index-selective with IM = 15 (MHMV) covers half the largest table; the global one the rest", () => {
    const m = irMachine({}, 15);
    m.writeIrte(2, irte({ vector: 0x21 })); // not in 0x8001's slot
    m.writeIrte(0x8001, irte({ vector: 0x22 }));
    m.send(EDU, remappable(2));
    m.send(EDU, remappable(0x8001));
    m.writeIrte(2, irte({ vector: 0x31 }));
    m.writeIrte(0x8001, irte({ vector: 0x32 }));
    m.queue.submit(iec.index(0x8000, 15));
    expect(m.send(EDU, remappable(2))).toMatchObject({ data: 0x4021 });
    expect(m.send(EDU, remappable(0x8001))).toMatchObject({ data: 0x4032 });
  });

  it("IM above MHMV (15) is an invalid field value: IQE with IQEI 4, the head stays on the descriptor", () => {
    const m = irMachine();
    const before = m.queue.head;
    m.queue.submit(iec.index(0, 16));
    expect(m.device.readRegister(Reg.FSTS, 4) & Fsts.IQE).toBe(Fsts.IQE);
    expect(m.device.readRegister(Reg.IQERCD, 4) & 0xfn).toBe(4n);
    expect(m.queue.head).toBe(before);
    // a global descriptor ignores IM
    const g = irMachine();
    g.queue.submit([iec.global()[0] | (31n << 27n), 0n]);
    expect(g.device.readRegister(Reg.FSTS, 4)).toBe(0n);
  });

  it("without interrupt remapping the descriptor is accepted and counted, whatever its IM (no cache)", () => {
    const m = machine({ interruptRemapping: false });
    const q = new Queue(m).enable();
    q.submit(iec.global(), iec.index(3, 31));
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(m.device.stats.interruptEntryCacheInvalidations).toBe(2);
  });

  it("a global invalidation of an empty cache and of a full one: the trace counts what went", () => {
    const m = irMachine();
    const dropped: number[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_inv_iec") dropped.push(e.dropped); });
    m.queue.submit(iec.global());
    for (let i = 0; i < 200; i++) { m.writeIrte(i, irte()); m.send(EDU, remappable(i)); }
    m.queue.submit(iec.global());
    expect(dropped).toEqual([0, 200]);
  });

  it("the cache is bounded: 1000 distinct indexes keep at most its capacity, and every answer stays right", () => {
    const m = irMachine({}, 10);
    for (let i = 0; i < 1000; i++) m.writeIrte(i, irte({ vector: i & 0xff }));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 1000; i++) expect(m.send(EDU, remappable(i))).toMatchObject({ data: 0x4000 | (i & 0xff) });
    }
    const dropped: number[] = [];
    m.device.trace.subscribe((e) => { if (e.type === "vtd_inv_iec") dropped.push(e.dropped); });
    m.queue.submit(iec.global());
    expect(dropped[0]).toBeLessThanOrEqual(256);
  });
});
