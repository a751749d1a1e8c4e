/**
 * What a device of ours sees of the platform: a DMA handle bound to its own requester id (the
 * IOMMU, if any, translates every access; never raw RAM), its interrupt signals, and a scheduler
 * that runs work at the platform's next safe point. Platform-neutral: v86 or a unit test.
 */
import type { DmaResult } from "../vtd-device/dma-result.ts";
import { TWO_POW_32 } from "../spec/numbers.ts";

/**
 * A 64-bit bus address: a number (an integer) below 2^53, where every address a guest normally
 * hands a device lies; a bigint at or above 2^53, the rare case a number cannot hold exactly
 * (a fault record must name such an address to the byte). `busAddress` and `busAddressPlus`
 * build them and keep to that rule.
 */
export type BusAddress = number | bigint;

/** High dwords from here on make an address of 2^53 or more. */
const HIGH_EXACT_LIMIT = 0x20_0000;

/** The bus address with these 32-bit halves: a number below 2^53, a bigint from there on. */
export function busAddress(low: number, high: number): BusAddress {
  high >>>= 0;
  low >>>= 0;
  return high < HIGH_EXACT_LIMIT ? high * TWO_POW_32 + low : (BigInt(high) << 32n) | BigInt(low);
}

/** `address + offset` (offset a non-negative integer below 2^32), exact: a bigint once it reaches 2^53. No 64-bit wrap. */
export function busAddressPlus(address: BusAddress, offset: number): BusAddress {
  if (typeof address === "number") {
    const sum = address + offset;
    // Below 2^53 the sum is exact; a true sum of 2^53 or more rounds to at least 2^53.
    return sum <= Number.MAX_SAFE_INTEGER ? sum : BigInt(address) + BigInt(offset);
  }
  return address + BigInt(offset);
}

export interface DmaHandle {
  /** The requester id (bus << 8 | device << 3 | function) every access carries. */
  readonly sourceId: number;
  /** Reads `into.length` bytes at bus address `iova` (a number on the hot path; see BusAddress). */
  read(iova: BusAddress, into: Uint8Array): DmaResult;
  write(iova: BusAddress, data: Uint8Array): DmaResult;
}

export interface PciInterrupts {
  /** The function's MSI capability is enabled by the guest. */
  msiEnabled(): boolean;
  /** Sends the MSI the guest programmed (a memory write of the data to the address). */
  sendMsi(): void;
  /** Drives INTx# (level-triggered; the platform honours Command.INTx Disable). */
  setIntx(asserted: boolean): void;
}

export interface DeviceScheduler {
  /** Runs `action` between guest instructions, `delayMs` from now on the platform's clock (0: next safe point). */
  after(delayMs: number, action: () => void): void;
}

/** The bus interface a PCI function receives when it is attached. */
export interface PciFunctionPort {
  readonly dma: DmaHandle;
  readonly interrupts: PciInterrupts;
  readonly scheduler: DeviceScheduler;
}

/**
 * A device's register block behind a memory BAR, as the platform calls it (offsets from the BAR).
 * Numbers only: v86 issues 8- and 32-bit accesses (a 16-bit one arrives as two bytes, a 64-bit
 * one as two dwords, low first); 16-bit accesses come from unit tests.
 */
export interface MmioRegion {
  /** The value of `size` bytes at `offset`, as an unsigned number (all ones where nothing answers). */
  readMmio(offset: number, size: 1 | 2 | 4): number;
  /** Writes the low `size` bytes of `value` at `offset`. */
  writeMmio(offset: number, size: 1 | 2 | 4, value: number): void;
}

/**
 * A function whose state travels with a saved machine: `checkState` names what is wrong with a
 * state (or returns undefined) without changing anything, so a platform checks every function's
 * part before it restores any. States are plain data; Uint8Arrays in them may be stored as binary.
 */
export interface SavableDevice {
  saveState(): unknown;
  checkState(state: unknown): string | undefined;
  restoreState(state: unknown): void;
}

export function isSavableDevice(device: unknown): device is SavableDevice {
  const d = device as Partial<SavableDevice> | null;
  return typeof d === "object" && d !== null && typeof d.saveState === "function" && typeof d.checkState === "function" && typeof d.restoreState === "function";
}

/** What a read of `size` bytes returns where no register answers: all ones. */
export function mmioAllOnes(size: 1 | 2 | 4): number {
  return size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
}
