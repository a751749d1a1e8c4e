import { describe, expect, it } from "vitest";
import { GuestRam } from "../vtd-device/memory/guest-memory.ts";
import { checkMultibootImage, memoryFields, MemoryType, provideMemoryFields, readMemoryMap, reserveRange, writeMemoryMap } from "./multiboot.ts";

function header(at: number, flags: number, size = 8192, checksumDelta = 0): Uint8Array {
  const image = new Uint8Array(size);
  const view = new DataView(image.buffer);
  view.setUint32(at, 0x1bad_b002, true);
  view.setUint32(at + 4, flags, true);
  view.setUint32(at + 8, (-(0x1bad_b002 + flags) + checksumDelta) >>> 0, true);
  return image;
}

describe("multiboot images", () => {
  it("accepts a header with address fields anywhere 4-aligned in the first 8 KiB", () => {
    expect(() => checkMultibootImage(header(4096, 1 << 16))).not.toThrow();
  });

  it("accepts an ELF32 image and refuses a header without ELF or address fields", () => {
    const elf = header(4096, 0);
    elf.set([0x7f, 0x45, 0x4c, 0x46, 1, 1], 0);
    expect(() => checkMultibootImage(elf)).not.toThrow();
    expect(() => checkMultibootImage(header(4096, 0))).toThrow(/neither a 32-bit little-endian ELF/);
  });

  it("refuses a missing header, a bad checksum, or a header past 8 KiB", () => {
    expect(() => checkMultibootImage(new Uint8Array(100))).toThrow(/not a multiboot image/);
    expect(() => checkMultibootImage(header(64, 1 << 16, 8192, 1))).toThrow(/not a multiboot image/);
    expect(() => checkMultibootImage(header(8192, 1 << 16, 12000))).toThrow(/not a multiboot image/);
  });
});

describe("multiboot memory map", () => {
  const v86Map = [
    { base: 0, length: 0xa_0000, type: MemoryType.Available },
    { base: 0xc_0000, length: 0x400_0000 - 0xc_0000, type: MemoryType.Available },
  ];

  it("carves the ACPI area out of v86's available RAM", () => {
    expect(reserveRange(v86Map, 0xe_0000, 0x10_0000)).toEqual([
      { base: 0, length: 0xa_0000, type: MemoryType.Available },
      { base: 0xc_0000, length: 0x2_0000, type: MemoryType.Available },
      { base: 0xe_0000, length: 0x2_0000, type: MemoryType.Reserved },
      { base: 0x10_0000, length: 0x400_0000 - 0x10_0000, type: MemoryType.Available },
    ]);
  });

  it("reads and rewrites the map in guest memory", () => {
    const ram = new GuestRam(1 << 20);
    const info = 0x7c00;
    const mmap = 0x7c80;
    ram.write32(info, 1 << 6);
    ram.write32(info + 44, 48);
    ram.write32(info + 48, mmap);
    v86Map.forEach((r, i) => {
      ram.write32(mmap + 24 * i, 20);
      ram.write64(mmap + 24 * i + 4, BigInt(r.base));
      ram.write64(mmap + 24 * i + 12, BigInt(r.length));
      ram.write32(mmap + 24 * i + 20, r.type);
    });
    expect(readMemoryMap(ram, info)).toEqual(v86Map);
    const reserved = reserveRange(v86Map, 0xe_0000, 0x10_0000);
    writeMemoryMap(ram, info, reserved);
    expect(ram.read32(info + 44)).toBe(4 * 24);
    expect(readMemoryMap(ram, info)).toEqual(reserved);
  });
});

describe("multiboot mem_lower / mem_upper (flags bit 0)", () => {
  const MiB = 1 << 20;
  const available = (base: number, length: number) => ({ base, length, type: MemoryType.Available });

  it("takes them from v86's map, after the ACPI area is carved out below 1 MiB", () => {
    const map = reserveRange([available(0, 0xa_0000), available(0xc_0000, 64 * MiB - 0xc_0000)], 0xe_0000, 0x10_0000);
    expect(memoryFields(map, 64 * MiB)).toEqual({ lowerKiB: 640, upperKiB: 63 * 1024 });
  });

  it("stops upper memory at the first hole and joins adjacent available ranges", () => {
    const map = [available(0, 0x9_fc00), available(0x10_0000, MiB), available(2 * MiB, MiB), { base: 3 * MiB, length: 4096, type: MemoryType.Reserved }, available(3 * MiB + 4096, MiB)];
    expect(memoryFields(map, 8 * MiB)).toEqual({ lowerKiB: 639, upperKiB: 2048 });
  });

  it("caps lower memory at 640 KiB and gives 0 when nothing is available at 0 or 1 MiB", () => {
    expect(memoryFields([available(0, 2 * MiB)], 2 * MiB)).toEqual({ lowerKiB: 640, upperKiB: 1024 });
    expect(memoryFields([available(0x1000, 0x1000)], 2 * MiB)).toEqual({ lowerKiB: 0, upperKiB: 0 });
  });

  it("without a map (the header did not ask for one) uses the RAM size, as v86's map would", () => {
    expect(memoryFields([], 128 * MiB)).toEqual({ lowerKiB: 640, upperKiB: 127 * 1024 });
  });

  it("writes the fields and sets flags bit 0, keeping the other flags", () => {
    const ram = new GuestRam(1 << 20);
    const info = 0x7c00;
    ram.write32(info, 1 << 2); // cmdline only, no map
    ram.write32(info + 4, 0xdead);
    expect(provideMemoryFields(ram, info, 32 * MiB)).toEqual({ lowerKiB: 640, upperKiB: 31 * 1024 });
    expect(ram.read32(info)).toBe((1 << 2) | 1);
    expect(ram.read32(info + 4)).toBe(640);
    expect(ram.read32(info + 8)).toBe(31 * 1024);
    expect(() => provideMemoryFields(ram, (1 << 20) - 4, 32 * MiB)).toThrow(/outside RAM/);
  });
});
