/**
 * What a device of ours sees of the platform: a DMA handle bound to its own requester id (the
 * IOMMU, if any, translates every access; never raw RAM), its interrupt signals, and a scheduler
 * that runs work at the platform's next safe point. Platform-neutral: v86 or a unit test.
 */
import type { DmaResult } from "../vtd-device/dma-result.ts";

export interface DmaHandle {
  /** The requester id (bus << 8 | device << 3 | function) every access carries. */
  readonly sourceId: number;
  read(iova: bigint, into: Uint8Array): DmaResult;
  write(iova: bigint, data: Uint8Array): DmaResult;
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

/** A device's register block behind a memory BAR, as the platform calls it (offsets from the BAR). */
export interface MmioRegion {
  /** The value of `size` bytes at `offset` (all ones where nothing answers). */
  readMmio(offset: number, size: 1 | 2 | 4 | 8): bigint;
  writeMmio(offset: number, size: 1 | 2 | 4 | 8, value: bigint): void;
}
