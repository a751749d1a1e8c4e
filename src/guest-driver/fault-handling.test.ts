/** Fault records read on the fault interrupt: reported, cleared, PPF and PFO handled. */
import { describe, expect, it } from "vitest";
import { FaultReason } from "../spec/fault-reasons.ts";
import { Fsts, Reg } from "../spec/registers.ts";
import type { FaultRecord } from "./options.ts";
import { deviceRead, deviceWrite, SID_A, SID_B, testMachine } from "../../test/support/driver-scenarios.ts";

function faultMachine(faultRecords = 1) {
  const faults: FaultRecord[] = [];
  const m = testMachine({ faultRecords }, { onFault: (f) => faults.push(f) });
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  m.driver.attach(SID_B, d);
  m.driver.map(d, 0x1000_0000, 0x40_0000, 4096, "r");
  return { ...m, d, faults };
}

const fsts = (m: ReturnType<typeof faultMachine>) => m.platform.device.readRegister(Reg.FSTS, 4);

describe("fault handling", () => {
  it("a DMA fault raises the fault interrupt; the driver reports the record and clears it", async () => {
    const m = faultMachine();
    expect(deviceRead(m.platform, SID_A, 0x1000_5123).ok).toBe(false);
    expect(fsts(m) & Fsts.PPF).toBe(Fsts.PPF);
    expect(m.faults).toEqual([]); // interrupts are delivered outside driver calls
    await Promise.resolve();
    expect(m.faults).toEqual([{ index: 0, sid: SID_A, reason: FaultReason.ReadNotPermitted, address: 0x1000_5000n, write: false }]);
    expect(fsts(m)).toBe(0n);
    expect(m.driver.counters.faultsReported).toBe(1);
    // Recording works again: a write to the read-only page.
    expect(deviceWrite(m.platform, SID_B, 0x1000_0000, new Uint8Array(4)).ok).toBe(false);
    await Promise.resolve();
    expect(m.faults[1]).toEqual({ index: 0, sid: SID_B, reason: FaultReason.WriteNotPermitted, address: 0x1000_0000n, write: true });
  });

  it("several records are read from FRI on, in order, while F is set", () => {
    const m = faultMachine(4);
    deviceRead(m.platform, SID_A, 0x2000_0000);
    deviceRead(m.platform, SID_B, 0x3000_0000);
    const records = m.driver.handleFaults();
    expect(records.map((r) => [r.index, r.sid, Number(r.address)])).toEqual([[0, SID_A, 0x2000_0000], [1, SID_B, 0x3000_0000]]);
    deviceRead(m.platform, SID_A, 0x4000_0000);
    expect(m.driver.handleFaults().map((r) => r.index)).toEqual([2]); // hardware's index moved on
    expect(fsts(m) & (Fsts.PPF | Fsts.PFO)).toBe(0n);
  });

  it("overflow: every record cleared, then PFO", () => {
    const m = faultMachine(1);
    deviceRead(m.platform, SID_A, 0x2000_0000);
    deviceRead(m.platform, SID_B, 0x3000_0000); // no free record: PFO
    expect(fsts(m) & (Fsts.PFO | Fsts.PPF)).toBe(Fsts.PFO | Fsts.PPF);
    const records = m.driver.handleFaults();
    expect(records.map((r) => r.sid)).toEqual([SID_A]);
    expect(fsts(m)).toBe(0n);
  });

  it("interrupts only go to the vectors the driver allocated", async () => {
    const m = faultMachine();
    deviceRead(m.platform, SID_A, 0x2000_0000);
    await Promise.resolve();
    expect(m.platform.strayInterrupts).toBe(0);
    expect(m.platform.device.stats.interruptsSent).toBe(1);
  });
});
