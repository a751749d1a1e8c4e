/**
 * The CLFLUSH hook's linear-to-physical walk (linear-address.ts) on hand-made 32-bit page tables:
 * paging off, 4 KiB pages, 4 MiB pages with and without CR4.PSE, frames above 2 GiB (CR0.PG and
 * bit 31 of an entry read as negative numbers), what is not mapped, and CR4.PAE.
 */
import { describe, expect, it } from "vitest";
import { GuestRam } from "../vtd-device/memory/guest-memory.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import type { V86Cpu } from "./internals.ts";
import { physicalAddress } from "./linear-address.ts";

const CR0_PG = 0x8000_0000, CR0_PE = 1;
const CR4_PSE = 0x10, CR4_PAE = 0x20;
const P = 1, PS = 0x80;
const DIRECTORY = 0x1000, TABLE = 0x2000;

function machine(cr0: number, cr4: number) {
  const ram = new GuestRam(16 << 20);
  const cr = new Int32Array(8);
  cr[0] = cr0;
  cr[3] = DIRECTORY;
  cr[4] = cr4;
  const view = new DataView(ram.direct.buffer);
  const put = (address: number, value: number) => view.setUint32(address, value >>> 0, true);
  const walk = (linear: number) => physicalAddress({ cr } as unknown as V86Cpu, new MemoryAccess(ram), linear);
  return { put, walk, cr };
}

describe("linear to guest-physical, as v86's CPU maps it", () => {
  it("paging off: the linear address itself, above 2 GiB too", () => {
    const m = machine(CR0_PE, 0);
    expect(m.walk(0x0012_3456)).toBe(0x0012_3456);
    expect(m.walk(0xfed9_0040 | 0)).toBe(0xfed9_0040);
  });

  it("4 KiB pages: directory entry, table entry, offset; a frame above 2 GiB stays positive", () => {
    const m = machine(CR0_PG | CR0_PE, 0);
    m.put(DIRECTORY + 1 * 4, TABLE | P | 2);
    m.put(TABLE + 3 * 4, 0x0005_0000 | P | 2);
    m.put(TABLE + 4 * 4, 0xc000_0000 | P);
    expect(m.walk((1 << 22) | (3 << 12) | 0x123)).toBe(0x0005_0123);
    expect(m.walk((1 << 22) | (4 << 12) | 0xfff)).toBe(0xc000_0fff);
  });

  it("what is not mapped: -1 for a not-present directory or table entry, or a directory outside RAM", () => {
    const m = machine(CR0_PG | CR0_PE, 0);
    m.put(DIRECTORY + 1 * 4, TABLE | P);
    m.put(TABLE + 5 * 4, 0x0005_0000); // P = 0
    expect(m.walk((1 << 22) | (5 << 12))).toBe(-1);
    expect(m.walk(7 << 22)).toBe(-1);
    m.cr[3] = 0x4000_0000; // beyond the 16 MiB of RAM
    expect(m.walk(1 << 22)).toBe(-1);
  });

  it("4 MiB pages with CR4.PSE; without it PS is ignored and the entry names a table", () => {
    const withPse = machine(CR0_PG | CR0_PE, CR4_PSE);
    withPse.put(DIRECTORY + 2 * 4, 0x0080_0000 | PS | P);
    withPse.put(DIRECTORY + 0x300 * 4, 0xc040_0000 | PS | P);
    expect(withPse.walk((2 << 22) | 0x12_3456)).toBe(0x0092_3456);
    expect(withPse.walk((0x300 << 22) | 0x3f_ffff)).toBe(0xc07f_ffff);

    const withoutPse = machine(CR0_PG | CR0_PE, 0);
    withoutPse.put(DIRECTORY + 2 * 4, TABLE | PS | P);
    withoutPse.put(TABLE + 0x12 * 4, 0x0007_0000 | P);
    expect(withoutPse.walk((2 << 22) | (0x12 << 12) | 0x456)).toBe(0x0007_0456);
  });

  it("CR4.PAE, which v86 does not offer: -1 (unknown)", () => {
    const m = machine(CR0_PG | CR0_PE, CR4_PAE);
    m.put(DIRECTORY, TABLE | P);
    expect(m.walk(0x1000)).toBe(-1);
  });
});
