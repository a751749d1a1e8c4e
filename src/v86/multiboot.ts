/**
 * Multiboot (v0.6.96) facts the platform needs: recognising an image, giving the guest the
 * mem_lower/mem_upper fields v86 leaves out, and carving a reserved range (the ACPI tables) out of
 * the memory map v86 hands the guest. v86's map reports
 * [0, 0xA0000) and [0xC0000, RAM size) as available, which would let a guest allocate over the
 * BIOS area where the RSDP must live.
 */
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";

export const MULTIBOOT_HEADER_MAGIC = 0x1bad_b002;
/** The header must lie, 4-byte aligned, in the image's first 8 KiB. */
export const MULTIBOOT_SEARCH_BYTES = 8192;
const FLAG_ADDRESS_FIELDS = 1 << 16;
const INFO_FLAG_MEMORY = 1 << 0;
const INFO_FLAG_MMAP = 1 << 6;
const InfoOffset = { FLAGS: 0, MEM_LOWER: 4, MEM_UPPER: 8, MMAP_LENGTH: 44, MMAP_ADDR: 48 } as const;
/** Multiboot 0.6.96 §3.3: lower memory starts at 0 and is at most 640 KiB; upper memory starts at 1 MiB. */
const LOWER_MEMORY_LIMIT = 0xa_0000;
const UPPER_MEMORY_START = 0x10_0000;
const MMAP_ENTRY_SIZE = 24;
export const MemoryType = { Available: 1, Reserved: 2 } as const;

export interface MemoryRange {
  base: number;
  length: number;
  type: number;
}

/** Throws a clear error unless `image` is a multiboot image v86 can load (header magic, checksum, ELF32 or address fields). */
export function checkMultibootImage(image: Uint8Array): void {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const limit = Math.min(MULTIBOOT_SEARCH_BYTES, image.byteLength) - 12;
  for (let at = 0; at <= limit; at += 4) {
    if (view.getUint32(at, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = view.getUint32(at + 4, true);
    if (((MULTIBOOT_HEADER_MAGIC + flags + view.getUint32(at + 8, true)) >>> 0) !== 0) continue;
    if (flags & FLAG_ADDRESS_FIELDS) return;
    const elf32 = image.byteLength >= 52 && view.getUint32(0, false) === 0x7f454c46 && image[4] === 1 && image[5] === 1;
    if (!elf32) throw new Error("kernel: multiboot header found, but the image is neither a 32-bit little-endian ELF nor uses the header's address fields");
    return;
  }
  throw new Error(
    `kernel is not a multiboot image: no header with magic 0x${MULTIBOOT_HEADER_MAGIC.toString(16).toUpperCase()} and a valid checksum in its first ${MULTIBOOT_SEARCH_BYTES} bytes`,
  );
}

function read32(memory: GuestMemory, address: number): number {
  const bytes = new Uint8Array(4);
  if (!memory.read(BigInt(address), bytes)) throw new Error(`multiboot info at 0x${address.toString(16)} is outside RAM`);
  return new DataView(bytes.buffer).getUint32(0, true);
}

export function readMemoryMap(memory: GuestMemory, infoAddress: number): MemoryRange[] {
  if (!(read32(memory, infoAddress + InfoOffset.FLAGS) & INFO_FLAG_MMAP)) return [];
  const length = read32(memory, infoAddress + InfoOffset.MMAP_LENGTH);
  const address = read32(memory, infoAddress + InfoOffset.MMAP_ADDR);
  const bytes = new Uint8Array(length);
  memory.read(BigInt(address), bytes);
  const view = new DataView(bytes.buffer);
  const ranges: MemoryRange[] = [];
  for (let at = 0; at + MMAP_ENTRY_SIZE <= length; at += view.getUint32(at, true) + 4) {
    ranges.push({ base: Number(view.getBigUint64(at + 4, true)), length: Number(view.getBigUint64(at + 12, true)), type: view.getUint32(at + 20, true) });
  }
  return ranges;
}

/** The map with [start, end) marked reserved: available ranges overlapping it are split. */
export function reserveRange(ranges: MemoryRange[], start: number, end: number): MemoryRange[] {
  const result: MemoryRange[] = [];
  for (const r of ranges) {
    const rEnd = r.base + r.length;
    if (r.type !== MemoryType.Available || rEnd <= start || r.base >= end) {
      result.push(r);
      continue;
    }
    if (r.base < start) result.push({ base: r.base, length: start - r.base, type: r.type });
    if (rEnd > end) result.push({ base: end, length: rEnd - end, type: r.type });
  }
  result.push({ base: start, length: end - start, type: MemoryType.Reserved });
  return result.sort((a, b) => a.base - b.base);
}

function write32(memory: GuestMemory, address: number, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  if (!memory.write(BigInt(address), bytes)) throw new Error(`multiboot info at 0x${address.toString(16)} is outside RAM`);
}

/** The end of the available RAM that runs without a gap from `start`, per the map (start if none). */
function availableFrom(ranges: MemoryRange[], start: number): number {
  let end = start;
  for (let grew = true; grew; ) {
    grew = false;
    for (const r of ranges) {
      if (r.type === MemoryType.Available && r.base <= end && r.base + r.length > end) {
        end = r.base + r.length;
        grew = true;
      }
    }
  }
  return end;
}

/**
 * mem_lower and mem_upper in KiB (Multiboot 0.6.96 §3.3): the available RAM from 0 (at most
 * 640 KiB) and from 1 MiB up to the first hole, taken from the memory map when there is one,
 * else from the RAM size (v86's map: [0, 0xA0000) and [0xC0000, RAM size)).
 */
export function memoryFields(ranges: MemoryRange[], ramBytes: number): { lowerKiB: number; upperKiB: number } {
  if (ranges.length === 0) {
    return { lowerKiB: LOWER_MEMORY_LIMIT / 1024, upperKiB: Math.max(0, Math.min(ramBytes, 2 ** 32) - UPPER_MEMORY_START) / 1024 };
  }
  const lowerEnd = Math.min(availableFrom(ranges, 0), LOWER_MEMORY_LIMIT);
  const upperEnd = Math.min(availableFrom(ranges, UPPER_MEMORY_START), 2 ** 32);
  return { lowerKiB: Math.floor(lowerEnd / 1024), upperKiB: Math.floor((upperEnd - UPPER_MEMORY_START) / 1024) };
}

/**
 * Gives the guest mem_lower/mem_upper and sets flags bit 0, which v86 never does (it writes only
 * the memory map, and that only when the header asks for memory information). QEMU's multiboot
 * loader always provides them; the spec requires them when the header's bit 1 is set.
 */
export function provideMemoryFields(memory: GuestMemory, infoAddress: number, ramBytes: number): { lowerKiB: number; upperKiB: number } {
  const fields = memoryFields(readMemoryMap(memory, infoAddress), ramBytes);
  write32(memory, infoAddress + InfoOffset.MEM_LOWER, fields.lowerKiB);
  write32(memory, infoAddress + InfoOffset.MEM_UPPER, fields.upperKiB);
  write32(memory, infoAddress + InfoOffset.FLAGS, read32(memory, infoAddress + InfoOffset.FLAGS) | INFO_FLAG_MEMORY);
  return fields;
}

/** Rewrites the memory map in place (it may grow by two entries; v86 puts nothing after it). */
export function writeMemoryMap(memory: GuestMemory, infoAddress: number, ranges: MemoryRange[]): void {
  const address = read32(memory, infoAddress + InfoOffset.MMAP_ADDR);
  const bytes = new Uint8Array(ranges.length * MMAP_ENTRY_SIZE);
  const view = new DataView(bytes.buffer);
  ranges.forEach((r, i) => {
    const at = i * MMAP_ENTRY_SIZE;
    view.setUint32(at, MMAP_ENTRY_SIZE - 4, true);
    view.setBigUint64(at + 4, BigInt(r.base), true);
    view.setBigUint64(at + 12, BigInt(r.length), true);
    view.setUint32(at + 20, r.type, true);
  });
  memory.write(BigInt(address), bytes);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, bytes.length, true);
  memory.write(BigInt(infoAddress + InfoOffset.MMAP_LENGTH), length);
}
