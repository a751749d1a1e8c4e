/** protect(): a mapping's permissions changed in place, then invalidated like an unmap (VT-d §6.5). */
import { describe, expect, it } from "vitest";
import { FaultReason } from "../spec/fault-reasons.ts";
import { deviceRead, deviceWrite, SID_A, testMachine } from "../../test/support/driver-scenarios.ts";

const IOVA = 0x4000_0000, PHYS = 0x200_0000;

describe("protect", () => {
  it("narrows and widens 4 KiB and 2 MiB mappings; the device sees each change at once", () => {
    const m = testMachine();
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, 0x20_0000, "rw"); // one 2 MiB leaf
    expect(deviceWrite(m.platform, SID_A, IOVA + 0x1000, new Uint8Array(4)).ok).toBe(true);
    m.driver.protect(d, IOVA, 0x20_0000, "r");
    expect(deviceWrite(m.platform, SID_A, IOVA + 0x1000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
    expect(deviceRead(m.platform, SID_A, IOVA + 0x1000).ok).toBe(true);
    m.driver.protect(d, IOVA, 0x20_0000, "w");
    expect(deviceRead(m.platform, SID_A, IOVA)).toEqual({ ok: false, reason: FaultReason.ReadNotPermitted });
    expect(d.tables.lookup(IOVA)).toMatchObject({ level: 2, permission: 2 });
  });

  it("refuses a range that is not mapped, a partial superpage, a bad access, with nothing changed", () => {
    const m = testMachine();
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, IOVA, PHYS, 0x20_0000, "rw");
    expect(() => m.driver.protect(d, IOVA + 0x20_0000, 4096, "r")).toThrow(/is not mapped/);
    expect(() => m.driver.protect(d, IOVA, 4096, "r")).toThrow(/2 MiB page at 0x40000000 is only partly in the range/);
    expect(() => m.driver.protect(d, IOVA, 0x20_0000, "x" as "r")).toThrow(/access x/);
    expect(() => m.driver.protect(d, IOVA + 1, 4096, "r")).toThrow(/not 4 KiB aligned/);
    expect(d.tables.lookup(IOVA)).toMatchObject({ permission: 3 });
  });
});
