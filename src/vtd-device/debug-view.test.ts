import { describe, expect, it } from "vitest";
import { Reg } from "../spec/registers.ts";
import { cacheContents, invalidationQueue, registerValues, translationStructures } from "./debug-view.ts";
import { GuestRam, VtdDevice } from "./index.ts";

describe("debug view", () => {
  it("reads the registers, an empty root table, the queue registers and the (empty) caches of a fresh unit", () => {
    const memory = new GuestRam(1 << 20);
    const unit = new VtdDevice({ memory });
    const regs = registerValues(unit);
    expect(regs.find((r) => r.name === "VER")?.value).toBe(0x10n);
    expect(regs.map((r) => r.offset)).toEqual([...regs.map((r) => r.offset)].sort((a, b) => a - b));
    unit.writeRegister(Reg.RTADDR, 8, 0x10000n);
    // One present root entry (bus 0) pointing at a context table with 00:04.0 present, DID 7, AW 2.
    memory.write32(0x10000, 0x11001);
    memory.write32(0x11000 + 0x20 * 16, 0x12001);
    memory.write32(0x11000 + 0x20 * 16 + 8, (7 << 8) | 2);
    // A 4 KiB page at IOVA 0x3000: PML4E -> PDPE -> PDE -> PTE (rw).
    memory.write32(0x12000, 0x13003);
    memory.write32(0x13000, 0x14003);
    memory.write32(0x14000, 0x15003);
    memory.write32(0x15000 + 3 * 8, 0x77003);
    const t = translationStructures(unit);
    expect(t.rootTable).toBe(0x10000n);
    expect(t.contexts).toHaveLength(1);
    expect(t.contexts[0]).toMatchObject({ bus: 0, devfn: 0x20, did: 7, aw: 2, tableRoot: 0x12000n });
    expect(t.contexts[0]!.mappings).toEqual([{ iova: 0x3000n, level: 1, output: 0x77000n, read: true, write: true, path: [0x13003n, 0x14003n, 0x15003n, 0x77003n] }]);
    expect(invalidationQueue(unit, 4)).toMatchObject({ base: 0n, head: 0, tail: 0, size: 256 });
    expect(cacheContents(unit)).toEqual({ contexts: [], iotlb: [] });
    expect(cacheContents({})).toBeUndefined();
    // Translation on (SRTP, then TE): one request fills the context cache and the IOTLB.
    unit.writeRegister(Reg.GCMD, 4, 1n << 30n);
    unit.writeRegister(Reg.GCMD, 4, 1n << 31n);
    expect(unit.translateForTest(0x20, 0x3123n, false)).toMatchObject({ ok: true, address: 0x77123n });
    expect(cacheContents(unit)).toEqual({
      contexts: [{ sid: 0x20, present: true, reason: 0, did: 7, tableRoot: 0x12000n, aw: 2, translationType: 0, fpd: false }],
      iotlb: [{ did: 7, level: 1, iova: 0x3000n, output: 0x77000n, read: true, write: true, reason: 0 }],
    });
  });
});
