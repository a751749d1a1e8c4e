/** Bad input to the driver's API: a clear error with a code, and guest state left as it was. */
import { describe, expect, it } from "vitest";
import { Domain } from "./domain.ts";
import { VtdDriverError, type DriverErrorCode } from "./errors.ts";
import { deviceRead, SID_A, testMachine, type TestMachine } from "../../test/support/driver-scenarios.ts";

const PHYS = 0x40_0000;

/** Guest memory the driver owns, the unit's counters and the driver's invalidation counters. */
function snapshot(m: TestMachine): { memory: Uint8Array; unit: string; driver: string; dirty: number[] } {
  const { base, limit } = m.platform.allocator;
  return {
    memory: m.platform.memory.readBytes(base, limit - base),
    unit: JSON.stringify(m.platform.device.stats),
    driver: JSON.stringify([m.driver.counters.iotlbInvalidations, m.driver.counters.contextInvalidations, m.driver.counters.descriptorsSubmitted]),
    dirty: m.platform.cache.dirtyLines(),
  };
}

function expectRejected(m: TestMachine, code: DriverErrorCode, message: RegExp, op: () => unknown): void {
  const before = snapshot(m);
  let error: unknown;
  try {
    op();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(VtdDriverError);
  expect((error as VtdDriverError).code).toBe(code);
  expect((error as Error).message).toMatch(message);
  const after = snapshot(m);
  expect(after.unit).toBe(before.unit);
  expect(after.driver).toBe(before.driver);
  expect(after.dirty).toEqual(before.dirty);
  expect(Buffer.compare(after.memory, before.memory)).toBe(0);
}

function setup(vtd: Parameters<typeof testMachine>[0] = {}) {
  const m = testMachine(vtd, {}, { allocatorBytes: 1 << 20 });
  const d = m.driver.createDomain({ addressWidth: 39 });
  m.driver.attach(SID_A, d);
  m.driver.map(d, 0x1000_0000, PHYS, 8 * 4096, "rw");
  m.driver.map(d, 0x4000_0000, 0x200_0000, 2 ** 21, "r");
  return { ...m, d };
}

describe("bad input", () => {
  for (const vtd of [{ coherent: true }, { coherent: false, cachingMode: true }]) {
    const label = `C=${vtd.coherent ? 1 : 0} CM=${vtd.cachingMode ? 1 : 0}`;

    it(`${label}: overlapping maps are refused, naming the first mapped address`, () => {
      const m = setup(vtd);
      expectRejected(m, "overlap", /map 0x10004000\+0x8000 in domain 1: 0x10004000 is already mapped/, () => m.driver.map(m.d, 0x1000_4000, PHYS, 8 * 4096, "r"));
      expectRejected(m, "overlap", /map 0xffff000\+0x9000 in domain 1: 0x10000000 is already mapped/, () => m.driver.map(m.d, 0x0fff_f000, PHYS, 9 * 4096, "r"));
      expectRejected(m, "overlap", /0x40100000 is already mapped/, () => m.driver.map(m.d, 0x4010_0000, PHYS, 4096, "r"));
    });

    it(`${label}: unmapping what is not mapped is refused, and nothing is unmapped`, () => {
      const m = setup(vtd);
      expectRejected(m, "not-mapped", /unmap 0x10000000\+0x10000 in domain 1: 0x10008000 is not mapped/, () => m.driver.unmap(m.d, 0x1000_0000, 16 * 4096));
      expectRejected(m, "not-mapped", /0x20000000 is not mapped/, () => m.driver.unmap(m.d, 0x2000_0000, 4096));
      expect(deviceRead(m.platform, SID_A, 0x1000_0000).ok).toBe(true);
    });

    it(`${label}: unaligned addresses and lengths are refused`, () => {
      const m = setup(vtd);
      expectRejected(m, "unaligned", /iova 0x30000010 is not 4 KiB aligned/, () => m.driver.map(m.d, 0x3000_0010, PHYS, 4096, "r"));
      expectRejected(m, "unaligned", /phys 0x400800 is not 4 KiB aligned/, () => m.driver.map(m.d, 0x3000_0000, PHYS + 0x800, 4096, "r"));
      expectRejected(m, "unaligned", /length 0x1001 is not 4 KiB aligned/, () => m.driver.map(m.d, 0x3000_0000, PHYS, 4097, "r"));
      expectRejected(m, "unaligned", /iova 0x10000800/, () => m.driver.unmap(m.d, 0x1000_0800, 4096));
    });

    it(`${label}: unknown devices and wrong attach/detach are refused`, () => {
      const m = setup(vtd);
      expectRejected(m, "unknown-device", /device 00:1f\.7 is not behind this unit/, () => m.driver.attach(0xff, m.d));
      expectRejected(m, "already-attached", /device 00:04\.0 is already attached to domain 1/, () => m.driver.attach(SID_A, m.d));
      expectRejected(m, "not-attached", /device 00:05\.0 is not attached/, () => m.driver.detach(0x28));
      expectRejected(m, "bad-argument", /source-id 65536/, () => m.driver.attach(0x1_0000, m.d));
    });

    it(`${label}: other bad arguments`, () => {
      const m = setup(vtd);
      expectRejected(m, "bad-argument", /beyond the domain's 39-bit address space/, () => m.driver.map(m.d, 2 ** 39 - 4096, PHYS, 8192, "r"));
      expectRejected(m, "bad-argument", /access x/, () => m.driver.map(m.d, 0x3000_0000, PHYS, 4096, "x" as "r"));
      expectRejected(m, "bad-argument", /length 0/, () => m.driver.map(m.d, 0x3000_0000, PHYS, 0, "r"));
      expectRejected(m, "bad-argument", /iova -4096/, () => m.driver.map(m.d, -4096, PHYS, 4096, "r"));
      const stranger = new Domain(1, 1, 39, m.d.tables, m.d.iovas);
      expectRejected(m, "bad-argument", /not a domain of this driver/, () => m.driver.map(stranger, 0x3000_0000, PHYS, 4096, "r"));
      expectRejected(m, "unsupported", /needs ECAP\.DT \(0\)/, () => m.driver.attach(0x28, m.d, { deviceTlb: true }));
    });
  }

  it("a domain with devices cannot be destroyed; without them it can, and its tables are freed", () => {
    const m = setup();
    expect(() => m.driver.destroyDomain(m.d)).toThrow(/still has devices attached/);
    const pagesBefore = m.platform.allocator.pagesInUse;
    m.driver.detach(SID_A);
    m.driver.destroyDomain(m.d);
    expect(m.platform.allocator.pagesInUse).toBeLessThan(pagesBefore);
    expect(() => m.driver.map(m.d, 0, PHYS, 4096, "r")).toThrow(/not a domain of this driver/);
  });
});
