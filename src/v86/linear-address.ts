/**
 * The guest-physical address behind a linear address, as v86's CPU maps it: 32-bit paging with
 * 4 KiB pages and, with CR4.PSE, 4 MiB pages (v86 offers no PAE). A walk of the guest's own
 * tables in RAM, with no side effect (no Accessed bits, no TLB fill, no page fault), for hooks
 * that run in the middle of an instruction (CLFLUSH). -1 when the address is not mapped, or the
 * CPU is in a mode this does not know (CR4.PAE).
 */
import type { V86Cpu } from "./internals.ts";
import type { MemoryAccess } from "../vtd-device/memory/memory-access.ts";

const CR0_PG = 0x8000_0000;
const CR4_PSE = 1 << 4;
const CR4_PAE = 1 << 5;
const PRESENT = 1;
const PAGE_SIZE_BIT = 1 << 7;

export function physicalAddress(cpu: V86Cpu, ram: MemoryAccess, linear: number): number {
  const cr0 = cpu.cr[0]! | 0;
  if ((cr0 & CR0_PG) === 0) return linear >>> 0;
  const cr4 = cpu.cr[4]! | 0;
  if (cr4 & CR4_PAE) return -1;
  const directory = (cpu.cr[3]! & ~0xfff) >>> 0;
  const pde = ram.read32(directory + ((linear >>> 22) << 2));
  if (pde < 0 || (pde & PRESENT) === 0) return -1;
  if (pde & PAGE_SIZE_BIT && cr4 & CR4_PSE) return ((pde & 0xffc0_0000) | (linear & 0x3f_ffff)) >>> 0;
  const pte = ram.read32(((pde & ~0xfff) >>> 0) + (((linear >>> 12) & 0x3ff) << 2));
  if (pte < 0 || (pte & PRESENT) === 0) return -1;
  return ((pte & ~0xfff) | (linear & 0xfff)) >>> 0;
}
