/**
 * An edu-compatible PCI device: the register map of QEMU's educational `edu` device
 * (PCI 1234:11e8 rev 0x10, shared/reference/guest-driver-rules.md), so guests written for QEMU's
 * edu (kvm-unit-tests' intel-iommu test) drive it unchanged. All DMA goes through its DMA handle,
 * as its requester id; completion runs on the platform's scheduler after `dmaDelayMs`.
 *
 * Where v86 differs from QEMU: only 8- and 32-bit MMIO exist, so a 64-bit access arrives as two
 * 32-bit halves, low first. A 32-bit write to a 64-bit register's low half sets the whole
 * register (as QEMU does for a 4-byte write), and one to its high half (0x84, 0x8C, 0x94, 0x9C)
 * sets bits 63:32; 32-bit reads of a high half return bits 63:32 (QEMU returns all ones there).
 * A DMA range outside the device buffer, which stops QEMU with hw_error, is refused here
 * (no transfer, counted in `stats.rangeErrors`) and the command completes.
 */
import type { DmaResult } from "../vtd-device/dma-result.ts";
import type { MmioRegion, PciFunctionPort } from "./bus.ts";
import type { PciFunctionIdentity } from "./pci-config.ts";

export const EduReg = {
  ID: 0x00,
  LIVENESS: 0x04,
  FACTORIAL: 0x08,
  STATUS: 0x20,
  INTERRUPT_STATUS: 0x24,
  INTERRUPT_RAISE: 0x60,
  INTERRUPT_ACK: 0x64,
  DMA_SOURCE: 0x80,
  DMA_DESTINATION: 0x88,
  DMA_COUNT: 0x90,
  DMA_COMMAND: 0x98,
} as const;

export const EDU_ID = 0x010000ed;
export const EduStatus = { COMPUTING: 0x01, IRQ_ON_FACTORIAL: 0x80 } as const;
export const EduDmaCommand = {
  START: 0x1,
  /** Direction: 0 = RAM (bus address) -> device buffer, 1 = device buffer -> RAM. */
  TO_RAM: 0x2,
  IRQ: 0x4,
} as const;
export const EduInterrupt = { FACTORIAL: 0x1, DMA: 0x100 } as const;
export const EDU_BUFFER_ADDRESS = 0x4_0000;
export const EDU_BUFFER_SIZE = 4096;
export const EDU_DEFAULT_DMA_MASK = (1n << 28n) - 1n;
/** QEMU's `edu,dma_mask=0xffffffffffffffff`: bus addresses pass unclipped. */
export const EDU_FULL_DMA_MASK = (1n << 64n) - 1n;
export const EDU_BAR0_SIZE = 1 << 20;
export const EDU_MSI_CAPABILITY = 0x40;

/** The PCI identity of an edu function with BAR0 at `bar0Address`. */
export function eduPciIdentity(bar0Address: number): PciFunctionIdentity {
  return {
    vendorId: 0x1234,
    deviceId: 0x11e8,
    revisionId: 0x10,
    classCode: 0x00ff00, // base class 0x00, subclass 0xff: "unclassified"
    interruptPin: 1,
    bars: [{ index: 0, address: bar0Address, size: EDU_BAR0_SIZE }],
    msiCapability: EDU_MSI_CAPABILITY,
  };
}

export interface EduOptions {
  port: PciFunctionPort;
  /** Delay from a DMA command to its completion on the platform clock. Default 0 (next safe point); QEMU uses 100 ms. */
  dmaDelayMs?: number;
  /** Mask applied to bus addresses (QEMU property dma_mask). Default (1 << 28) - 1. */
  dmaMask?: bigint;
}

export interface EduStats {
  dmaTransfers: number;
  dmaFailures: number;
  rangeErrors: number;
  lastDmaResult: DmaResult | undefined;
  interruptsSent: number;
}

const ALL_ONES = 0xffff_ffff_ffff_ffffn;
const LOW32 = 0xffff_ffffn;

export class EduDevice implements MmioRegion {
  /** The 4 KiB buffer at device address 0x40000. */
  readonly buffer = new Uint8Array(EDU_BUFFER_SIZE);
  readonly stats: EduStats = { dmaTransfers: 0, dmaFailures: 0, rangeErrors: 0, lastDmaResult: undefined, interruptsSent: 0 };
  private readonly port: PciFunctionPort;
  private readonly dmaDelayMs: number;
  private readonly dmaMask: bigint;
  private liveness = 0;
  private factorial = 0;
  private status = 0;
  private interruptStatus = 0;
  private dmaSource = 0n;
  private dmaDestination = 0n;
  private dmaCount = 0n;
  private dmaCommand = 0n;

  constructor(options: EduOptions) {
    this.port = options.port;
    const delay = options.dmaDelayMs ?? 0;
    if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) {
      throw new RangeError(`EduDevice option dmaDelayMs: expected a number of ms >= 0, got ${String(delay)}`);
    }
    this.dmaDelayMs = delay;
    this.dmaMask = options.dmaMask ?? EDU_DEFAULT_DMA_MASK;
  }

  get interruptStatusBits(): number {
    return this.interruptStatus;
  }

  readMmio(offset: number, size: 1 | 2 | 4 | 8): bigint {
    if (!this.sizeAccepted(offset, size)) return ALL_ONES >> BigInt(64 - 8 * size);
    const value = this.readRegister(offset);
    if (value === undefined) return ALL_ONES >> BigInt(64 - 8 * size);
    return size === 8 ? value : value & LOW32;
  }

  writeMmio(offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    if (!this.sizeAccepted(offset, size)) return;
    const low = Number(value & LOW32);
    switch (offset) {
      case EduReg.LIVENESS:
        this.liveness = ~low >>> 0;
        return;
      case EduReg.FACTORIAL:
        this.startFactorial(low);
        return;
      case EduReg.STATUS:
        this.status = low & EduStatus.IRQ_ON_FACTORIAL ? this.status | EduStatus.IRQ_ON_FACTORIAL : this.status & ~EduStatus.IRQ_ON_FACTORIAL;
        return;
      case EduReg.INTERRUPT_RAISE:
        this.raiseInterrupt(low);
        return;
      case EduReg.INTERRUPT_ACK:
        this.lowerInterrupt(low);
        return;
    }
    if (offset < EduReg.DMA_SOURCE || offset >= EduReg.DMA_COMMAND + 8 || offset & (size - 1)) return;
    if (this.dmaRunning) return; // registers are frozen while a transfer is under way
    const register = offset & ~7;
    const upper = (offset & 4) !== 0;
    const current = this.dmaRegister(register);
    const next = upper ? (current & LOW32) | ((value & LOW32) << 32n) : size === 8 ? value : value & LOW32;
    this.setDmaRegister(register, next);
    if (register === EduReg.DMA_COMMAND && !upper && (next & BigInt(EduDmaCommand.START)) !== 0n) {
      this.port.scheduler.after(this.dmaDelayMs, () => this.runDma());
    }
  }

  private sizeAccepted(offset: number, size: number): boolean {
    return offset < 0x80 ? size === 4 : size === 4 || size === 8;
  }

  private readRegister(offset: number): bigint | undefined {
    switch (offset) {
      case EduReg.ID:
        return BigInt(EDU_ID);
      case EduReg.LIVENESS:
        return BigInt(this.liveness);
      case EduReg.FACTORIAL:
        return BigInt(this.factorial);
      case EduReg.STATUS:
        return BigInt(this.status);
      case EduReg.INTERRUPT_STATUS:
        return BigInt(this.interruptStatus);
    }
    if (offset >= EduReg.DMA_SOURCE && offset < EduReg.DMA_COMMAND + 8 && (offset & 3) === 0) {
      const value = this.dmaRegister(offset & ~7);
      return offset & 4 ? value >> 32n : value;
    }
    return undefined;
  }

  private get dmaRunning(): boolean {
    return (this.dmaCommand & BigInt(EduDmaCommand.START)) !== 0n;
  }

  private dmaRegister(register: number): bigint {
    switch (register) {
      case EduReg.DMA_SOURCE:
        return this.dmaSource;
      case EduReg.DMA_DESTINATION:
        return this.dmaDestination;
      case EduReg.DMA_COUNT:
        return this.dmaCount;
      default:
        return this.dmaCommand;
    }
  }

  private setDmaRegister(register: number, value: bigint): void {
    switch (register) {
      case EduReg.DMA_SOURCE:
        this.dmaSource = value;
        return;
      case EduReg.DMA_DESTINATION:
        this.dmaDestination = value;
        return;
      case EduReg.DMA_COUNT:
        this.dmaCount = value;
        return;
      default:
        this.dmaCommand = value;
    }
  }

  /** Buffer offset of [deviceAddress, deviceAddress + count) or -1 if it is not inside the buffer. */
  private bufferOffset(deviceAddress: bigint, count: bigint): number {
    const start = deviceAddress - BigInt(EDU_BUFFER_ADDRESS);
    if (start < 0n || count > BigInt(EDU_BUFFER_SIZE) || start + count > BigInt(EDU_BUFFER_SIZE)) return -1;
    return Number(start);
  }

  private runDma(): void {
    if (!this.dmaRunning) return;
    const count = this.dmaCount;
    const toRam = (this.dmaCommand & BigInt(EduDmaCommand.TO_RAM)) !== 0n;
    const offset = this.bufferOffset(toRam ? this.dmaSource : this.dmaDestination, count);
    if (offset < 0) {
      this.stats.rangeErrors++;
    } else if (count > 0n) {
      const window = this.buffer.subarray(offset, offset + Number(count));
      const result = toRam ? this.port.dma.write(this.dmaDestination & this.dmaMask, window) : this.port.dma.read(this.dmaSource & this.dmaMask, window);
      this.stats.lastDmaResult = result;
      if (result.ok) this.stats.dmaTransfers++;
      else this.stats.dmaFailures++;
    }
    this.dmaCommand &= ~BigInt(EduDmaCommand.START);
    if ((this.dmaCommand & BigInt(EduDmaCommand.IRQ)) !== 0n) this.raiseInterrupt(EduInterrupt.DMA);
  }

  private startFactorial(n: number): void {
    if (this.status & EduStatus.COMPUTING) return;
    this.factorial = n;
    this.status |= EduStatus.COMPUTING;
    this.port.scheduler.after(0, () => {
      let product = 1;
      for (let i = this.factorial; i > 0; i--) product = Math.imul(product, i);
      this.factorial = product >>> 0;
      this.status &= ~EduStatus.COMPUTING;
      if (this.status & EduStatus.IRQ_ON_FACTORIAL) this.raiseInterrupt(EduInterrupt.FACTORIAL);
    });
  }

  private raiseInterrupt(bits: number): void {
    this.interruptStatus = (this.interruptStatus | bits) >>> 0;
    if (this.interruptStatus === 0) return;
    this.stats.interruptsSent++;
    if (this.port.interrupts.msiEnabled()) this.port.interrupts.sendMsi();
    else this.port.interrupts.setIntx(true);
  }

  private lowerInterrupt(bits: number): void {
    this.interruptStatus = (this.interruptStatus & ~bits) >>> 0;
    if (this.interruptStatus === 0 && !this.port.interrupts.msiEnabled()) this.port.interrupts.setIntx(false);
  }
}
