import { describe, expect, it } from "vitest";
import { GuestRam, type GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import { untranslatedRead, untranslatedWrite } from "./pci-bus.ts";

/** GuestRam with its direct view and a record of afterDirectWrite calls. */
function ramWithReport(bytes: number): { memory: MemoryAccess; ram: GuestRam; reported: [number, number][] } {
  const ram = new GuestRam(bytes);
  const reported: [number, number][] = [];
  const memory: GuestMemory = {
    size: ram.size,
    direct: ram.direct,
    read: (address, into) => ram.read(address, into),
    write: (address, data) => ram.write(address, data),
    afterDirectWrite: (address, length) => reported.push([address, length]),
  };
  return { memory: new MemoryAccess(memory), ram, reported };
}

describe("a function's DMA without an IOMMU (the bus address is the physical address)", () => {
  it("moves bytes over the direct view with numbers, small and large, and reports the writes", () => {
    const { memory, ram, reported } = ramWithReport(0x1_0000);
    const small = Uint8Array.from([1, 2, 3, 4]);
    const large = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    expect(untranslatedWrite(memory, 0x100, small)).toBe(true);
    expect(untranslatedWrite(memory, 0x1_0000 - 300, large)).toBe(true); // up to the last byte
    expect(Array.from(ram.direct.subarray(0x100, 0x104))).toEqual([1, 2, 3, 4]);
    expect(reported).toEqual([[0x100, 4], [0x1_0000 - 300, 300]]);
    const back = new Uint8Array(300);
    expect(untranslatedRead(memory, 0x1_0000 - 300, back)).toBe(true);
    expect(back).toEqual(large);
    const four = new Uint8Array(4);
    expect(untranslatedRead(memory, 0x100, four)).toBe(true);
    expect(Array.from(four)).toEqual([1, 2, 3, 4]);
  });

  it("refuses what is not RAM: past the end, negative, fractional, at or above 2^53", () => {
    const { memory, ram, reported } = ramWithReport(0x1_0000);
    const byte = Uint8Array.of(0x5a);
    for (const address of [0x1_0000, -1, 0.5, 2 ** 53, 0xffff_ffff_ffff_f000n]) {
      expect(untranslatedWrite(memory, address, byte)).toBe(false);
      expect(untranslatedRead(memory, address, byte)).toBe(false);
    }
    expect(untranslatedWrite(memory, 0xffff, Uint8Array.of(1, 2))).toBe(false); // one byte over
    expect(reported).toEqual([]);
    expect(ram.direct.every((b) => b === 0)).toBe(true);
  });

  it("without a direct view, and for a bigint address, goes through GuestMemory's bigint interface", () => {
    const ram = new GuestRam(0x1000);
    const calls: bigint[] = [];
    const memory = new MemoryAccess({
      size: ram.size,
      read: (address, into) => (calls.push(address), ram.read(address, into)),
      write: (address, data) => (calls.push(address), ram.write(address, data)),
    });
    expect(untranslatedWrite(memory, 0x10, Uint8Array.of(7))).toBe(true);
    const into = new Uint8Array(1);
    expect(untranslatedRead(memory, 0x10n, into)).toBe(true);
    expect(into[0]).toBe(7);
    expect(untranslatedRead(memory, 0.5, into)).toBe(false); // never BigInt(0.5)
    expect(calls).toEqual([0x10n, 0x10n]);
  });
});
