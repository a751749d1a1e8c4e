import { describe, expect, it } from "vitest";
import { FaultReason, IOTLB_OFFSET, Reg } from "../spec/index.ts";
import { enableTranslation, machine, R, type Machine } from "../../test/support/tables.ts";
import { desc, Queue } from "../../test/support/queue.ts";
import { faultCounts, invalidationCounts } from "../cli/summary.ts";
import type { TraceEvent } from "./trace.ts";

const A = 0x20, B = 0x28, NOT_PRESENT_SID = 0x30;

/** Register-based invalidations, misses and hits on two requesters, faults, then queued invalidations. */
function workload(m: Machine): void {
  const rootA = m.tables.context(A, { did: 1 });
  const rootB = m.tables.context(B, { did: 2 });
  for (let p = 0; p < 4; p++) m.tables.map(rootA, 3, p * 4096, 0x20_0000 + p * 4096, R);
  m.tables.map(rootB, 3, 0, 0x30_0000, R);
  enableTranslation(m);
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n)); // global context-cache invalidation
  m.device.writeRegister(IOTLB_OFFSET, 8, (1n << 63n) | (1n << 60n)); // global IOTLB invalidation
  const byte = new Uint8Array(1);
  for (let round = 0; round < 2; round++) for (let p = 0; p < 4; p++) m.device.dmaRead(A, p * 4096, byte);
  m.device.dmaRead(B, 0, byte);
  m.device.dmaWrite(B, 0, byte); // read-only: a write fault
  m.device.dmaWrite(B, 0, byte); // the same source is pending: not recorded
  m.device.dmaRead(NOT_PRESENT_SID, 0, byte);
  new Queue(m).enable().submit(desc.iotlbPage(1, 0x1000n), desc.iotlbPage(1, 0x2000n), desc.iotlbDomain(2), desc.contextDevice(A, 1), desc.contextGlobal());
}

/** The counts the CLI used to take from trace events: the reference the numeric counters must equal. */
function countFromTrace(events: TraceEvent[]) {
  const invalidations = new Map<string, number>();
  const faults = new Map<number, { recorded: number; notRecorded: number }>();
  const iotlbMisses = new Map<number, number>(), contextMisses = new Map<number, number>(), faultsBySid = new Map<number, number>();
  const bump = (map: Map<number, number>, key: number) => map.set(key, (map.get(key) ?? 0) + 1);
  for (const e of events) {
    if (e.type === "vtd_inv") {
      const key = `${e.cache}${e.cache === "device-iotlb" ? "" : ` ${e.granularity}`} (${e.source})`;
      invalidations.set(key, (invalidations.get(key) ?? 0) + 1);
    } else if (e.type === "vtd_fault") {
      const f = faults.get(e.reason) ?? { recorded: 0, notRecorded: 0 };
      if (e.recorded) f.recorded++;
      else f.notRecorded++;
      faults.set(e.reason, f);
      bump(faultsBySid, e.sid);
    } else if (e.type === "vtd_iotlb_miss") bump(iotlbMisses, e.sid);
    else if (e.type === "vtd_context_miss") bump(contextMisses, e.sid);
  }
  return { invalidations, faults, iotlbMisses, contextMisses, faultsBySid };
}

describe("the unit's counters (what the summaries print, counted without trace events)", () => {
  it("count what the trace shows, with nobody listening", () => {
    const traced = machine({ awBits: 39 });
    const events: TraceEvent[] = [];
    traced.device.trace.subscribe((e) => events.push(e));
    workload(traced);
    const quiet = machine({ awBits: 39 });
    workload(quiet);
    expect(quiet.device.trace.active).toBe(false);

    const expected = countFromTrace(events);
    const c = quiet.device.counters;
    expect(invalidationCounts(c)).toEqual(expected.invalidations);
    expect(faultCounts(c)).toEqual(expected.faults);
    expect(c.iotlbMissesBySid).toEqual(expected.iotlbMisses);
    expect(c.contextMissesBySid).toEqual(expected.contextMisses);
    expect(c.faultsBySid).toEqual(expected.faultsBySid);
    // What the workload did, so the comparison above is not of two empty maps.
    expect(invalidationCounts(c)).toEqual(new Map([
      ["context global (register)", 1], ["iotlb global (register)", 1],
      ["context global (queue)", 1], ["context device (queue)", 1], ["iotlb domain (queue)", 1], ["iotlb page (queue)", 2],
    ]));
    expect(faultCounts(c)).toEqual(new Map([
      [FaultReason.WriteNotPermitted, { recorded: 1, notRecorded: 1 }],
      [FaultReason.ContextEntryNotPresent, { recorded: 0, notRecorded: 1 }], // the one fault recording register is taken: PFO
    ]));
    expect(c.iotlbMissesBySid).toEqual(new Map([[A, 4], [B, 1]]));
    expect(c.faultsBySid).toEqual(new Map([[B, 2], [NOT_PRESENT_SID, 1]]));
  });
});
