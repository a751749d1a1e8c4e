import { describe, expect, it } from "vitest";
import { busAddress, busAddressPlus } from "./bus.ts";

describe("bus addresses: numbers below 2^53, exact bigints from there on", () => {
  it("builds an address from its halves", () => {
    expect(busAddress(0x1234_5678, 0)).toBe(0x1234_5678);
    expect(busAddress(0xffff_f000, 0x1f_ffff)).toBe(2 ** 53 - 0x1000);
    expect(busAddress(0, 0x20_0000)).toBe(2n ** 53n);
    expect(busAddress(0xffff_f001, 0xffff_ffff)).toBe(0xffff_ffff_ffff_f001n);
    expect(busAddress(-1, 0)).toBe(0xffff_ffff); // halves are taken as unsigned dwords
  });

  it("adds an offset exactly, crossing 2^53 into bigint", () => {
    expect(busAddressPlus(0x4000_0000, 0x10)).toBe(0x4000_0010);
    expect(busAddressPlus(2 ** 53 - 2, 1)).toBe(2 ** 53 - 1);
    expect(busAddressPlus(2 ** 53 - 1, 1)).toBe(2n ** 53n);
    expect(busAddressPlus(2 ** 53 - 2, 3)).toBe(2n ** 53n + 1n); // a number sum would round to 2^53
    expect(busAddressPlus(0xffff_ffff_ffff_f000n, 0xfff)).toBe(0xffff_ffff_ffff_ffffn);
  });
});
