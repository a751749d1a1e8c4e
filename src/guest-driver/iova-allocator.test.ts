import { describe, expect, it } from "vitest";
import { addressMask, deviceTlbRange } from "./invalidation.ts";
import { IovaAllocator } from "./iova-allocator.ts";

describe("IOVA allocator", () => {
  it("first fit from the bottom, size-aligned, below a DMA mask", () => {
    const a = new IovaAllocator(0x1000, 2 ** 39);
    expect(a.allocate(0x1000)).toBe(0x1000);
    expect(a.allocate(0x3000)).toBe(0x4000); // aligned to 16K
    expect(a.allocate(0x1000)).toBe(0x2000);
    expect(a.allocate(2 ** 21)).toBe(2 ** 21);
    expect(() => a.allocate(2 ** 28, 2 ** 28)).toThrow(/no free IOVA range of 268435456 bytes below 0x10000000/);
  });

  it("released ranges merge with their neighbours; double release is an error", () => {
    const a = new IovaAllocator(0x1000, 0x10_0000);
    const xs = [a.allocate(0x1000), a.allocate(0x1000), a.allocate(0x1000)];
    const free = a.freeBytes;
    a.release(xs[1]!, 0x1000);
    a.release(xs[0]!, 0x1000);
    a.release(xs[2]!, 0x1000);
    expect(a.freeBytes).toBe(free + 0x3000);
    expect(a.isFree(0x1000, 0x10_0000 - 0x1000)).toBe(true);
    expect(() => a.release(0x1000, 0x1000)).toThrow(/released twice/);
  });

  it("reserve carves explicit mappings out; releaseWithin clips to the span", () => {
    const a = new IovaAllocator(0x1000, 0x10_0000);
    a.reserve(0x1000, 0x2000);
    expect(a.allocate(0x1000)).toBe(0x3000);
    a.releaseWithin(0, 0x3000);
    expect(a.isFree(0x1000, 0x2000)).toBe(true);
    expect(a.isFree(0, 0x1000)).toBe(false);
  });
});

describe("invalidation ranges", () => {
  it("the covering address mask of a range", () => {
    expect(addressMask(0x1000, 0x1000)).toEqual({ address: 0x1000, am: 0 });
    expect(addressMask(0x4000, 0x3000)).toEqual({ address: 0x4000, am: 2 });
    expect(addressMask(0x3000, 0x2000)).toEqual({ address: 0, am: 3 }); // straddles an 8K boundary
    expect(addressMask(2 ** 30, 2 ** 30)).toEqual({ address: 2 ** 30, am: 18 });
  });

  it("device-TLB ranges in the ATS size encoding", () => {
    expect(deviceTlbRange(0x28, 0x5000, 0x1000)).toEqual({ kind: "device-tlb", sid: 0x28, address: 0x5000n, size: false });
    expect(deviceTlbRange(0x28, 0x4000, 0x4000)).toEqual({ kind: "device-tlb", sid: 0x28, address: 0x5000n, size: true });
    expect(deviceTlbRange(0x28, 2 ** 21, 2 ** 21)).toEqual({ kind: "device-tlb", sid: 0x28, address: BigInt(2 ** 21 + 0xff000), size: true });
  });
});
