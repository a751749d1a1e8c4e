import { describe, expect, it } from "vitest";
import { InterruptEntryCache } from "./interrupt-entry-cache.ts";

describe("the interrupt entry cache", () => {
  it("keeps an IRTE's four dwords by index and gives them back", () => {
    const cache = new InterruptEntryCache(16);
    expect(cache.lookup(5)).toBe(-1);
    cache.fill(5, 0x0040_0001, 0x0000_0100, 0x0004_0020, 0);
    const slot = cache.lookup(5);
    expect(slot).toBeGreaterThanOrEqual(0);
    expect([cache.w0[slot], cache.w1[slot], cache.w2[slot], cache.w3[slot]]).toEqual([0x0040_0001, 0x100, 0x0004_0020, 0]);
    // dwords with bit 31 set come back with the same bits
    cache.fill(6, 0xffff_ffff, 0x8000_0000, 0, 0);
    expect(cache.w0[cache.lookup(6)]! >>> 0).toBe(0xffff_ffff);
    expect(cache.w1[cache.lookup(6)]! >>> 0).toBe(0x8000_0000);
    expect(cache.count).toBe(2);
  });

  it("is bounded: an index evicts the one in its slot (direct mapped), the count never exceeds the capacity", () => {
    const cache = new InterruptEntryCache(8);
    for (let index = 0; index < 100; index++) cache.fill(index, index, 0, 0, 0);
    expect(cache.count).toBe(8);
    expect(cache.lookup(3)).toBe(-1);
    expect(cache.lookup(99)).toBeGreaterThanOrEqual(0);
    expect(cache.w0[cache.lookup(99)]).toBe(99);
    cache.fill(99, 7, 0, 0, 0); // refill: same slot, count unchanged
    expect(cache.count).toBe(8);
    expect(cache.w0[cache.lookup(99)]).toBe(7);
  });

  it("global invalidation drops everything", () => {
    const cache = new InterruptEntryCache(8);
    for (let index = 0; index < 5; index++) cache.fill(index, 1, 0, 0, 0);
    expect(cache.invalidateAll()).toBe(5);
    expect(cache.count).toBe(0);
    for (let index = 0; index < 5; index++) expect(cache.lookup(index)).toBe(-1);
  });

  it("index-selective invalidation drops exactly [first, first + count), small and large ranges", () => {
    const cache = new InterruptEntryCache(64);
    for (let index = 0; index < 64; index++) cache.fill(index, 1, 0, 0, 0);
    expect(cache.invalidateIndexes(8, 4)).toBe(4);
    for (let index = 0; index < 64; index++) expect(cache.lookup(index) >= 0).toBe(index < 8 || index >= 12);
    // a range wider than the cache visits each slot once
    const wide = new InterruptEntryCache(16);
    for (let index = 1000; index < 1016; index++) wide.fill(index, 1, 0, 0, 0);
    expect(wide.invalidateIndexes(1008, 32768)).toBe(8);
    expect(wide.count).toBe(8);
    expect(wide.lookup(1007)).toBeGreaterThanOrEqual(0);
    expect(wide.lookup(1008)).toBe(-1);
    // an index in the slot but outside the range stays
    const aliased = new InterruptEntryCache(8);
    aliased.fill(9, 1, 0, 0, 0); // slot 1
    expect(aliased.invalidateIndexes(1, 1)).toBe(0);
    expect(aliased.lookup(9)).toBeGreaterThanOrEqual(0);
  });
});
