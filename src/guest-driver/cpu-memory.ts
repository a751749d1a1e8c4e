/**
 * `PhysicalMemory` over a CPU's own loads and stores, as both platforms build it: every access
 * checked first (RAM, and aligned: dwords to 4, qwords to 8), a qword read as two dword loads,
 * byte arrays byte by byte, and every store reported afterwards (for the CPU-cache record).
 */
import type { PhysicalMemory } from "./platform.ts";

/** The CPU's accessors. `write64` must be ONE store (see platform.ts). */
export interface CpuAccess {
  read8(address: number): number;
  /** Unsigned. */
  read32(address: number): number;
  write8(address: number, value: number): void;
  write32(address: number, value: number): void;
  write64(address: number, value: bigint): void;
}

export function cpuPhysicalMemory(
  cpu: CpuAccess,
  /** Throws unless [address, address + length) is RAM and `address` a multiple of `alignment`. */
  check: (address: number, length: number, alignment: number) => void,
  stored: (address: number, length: number) => void,
): PhysicalMemory {
  return {
    read32: (address) => {
      check(address, 4, 4);
      return cpu.read32(address);
    },
    read64: (address) => {
      check(address, 8, 8);
      return (BigInt(cpu.read32(address + 4)) << 32n) | BigInt(cpu.read32(address));
    },
    write32: (address, value) => {
      check(address, 4, 4);
      cpu.write32(address, value);
      stored(address, 4);
    },
    write64: (address, value) => {
      check(address, 8, 8);
      cpu.write64(address, value);
      stored(address, 8);
    },
    readBytes: (address, length) => {
      check(address, length, 1);
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = cpu.read8(address + i);
      return out;
    },
    writeBytes: (address, data) => {
      check(address, data.length, 1);
      for (let i = 0; i < data.length; i++) cpu.write8(address + i, data[i]!);
      stored(address, data.length);
    },
  };
}
