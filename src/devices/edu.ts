/**
 * An edu-compatible PCI device: the register map of QEMU's educational `edu` device
 * (PCI 1234:11e8 rev 0x10, shared/reference/guest-driver-rules.md), so guests written for QEMU's
 * edu (kvm-unit-tests' intel-iommu test) drive it unchanged. All DMA goes through its DMA handle,
 * as its requester id; completion runs on the platform's scheduler after `dmaDelayMs`.
 *
 * Where v86 differs from QEMU: only 8- and 32-bit MMIO exist, so a 64-bit access arrives as two
 * 32-bit halves, low first (the device keeps its 64-bit registers as such halves: numbers, no
 * bigint per access). Accesses of any other size than 4 bytes read all ones and are ignored. A
 * 32-bit write to a 64-bit register's low half sets the whole register (as QEMU does for a
 * 4-byte write), and one to its high half (0x84, 0x8C, 0x94, 0x9C) sets bits 63:32; 32-bit reads
 * of a high half return bits 63:32 (QEMU returns all ones there).
 * A DMA range outside the device buffer, which stops QEMU with hw_error, is refused here
 * (no transfer, counted in `stats.rangeErrors`) and the command completes.
 */
import type { DmaResult } from "../vtd-device/dma-result.ts";
import { busAddress, mmioAllOnes, type MmioRegion, type PciFunctionPort } from "./bus.ts";
import type { PciFunctionIdentity } from "./pci-config.ts";
import { isCount, isDword } from "./state-checks.ts";

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

/** What an edu function holds between two guest accesses (save and restore of a machine). */
export interface EduState {
  liveness: number;
  factorial: number;
  status: number;
  interruptStatus: number;
  /** The DMA registers as eight dword halves, low first. */
  dma: number[];
  /** The 4 KiB buffer. */
  buffer: number[];
  stats: { dmaTransfers: number; dmaFailures: number; rangeErrors: number; interruptsSent: number };
}

/** The DMA registers (0x80-0x9F: source, destination, count, command) as eight 32-bit halves, low first. */
const DMA_FIRST = EduReg.DMA_SOURCE;
const DMA_END = EduReg.DMA_COMMAND + 8;
const SOURCE = 0;
const DESTINATION = 2;
const COUNT = 4;
const COMMAND = 6;

export class EduDevice implements MmioRegion {
  /** The 4 KiB buffer at device address 0x40000. */
  readonly buffer = new Uint8Array(EDU_BUFFER_SIZE);
  readonly stats: EduStats = { dmaTransfers: 0, dmaFailures: 0, rangeErrors: 0, lastDmaResult: undefined, interruptsSent: 0 };
  private readonly port: PciFunctionPort;
  private readonly dmaDelayMs: number;
  private readonly dmaMaskLow: number;
  private readonly dmaMaskHigh: number;
  private liveness = 0;
  private factorial = 0;
  private status = 0;
  private interruptStatus = 0;
  /** Index (offset - 0x80) / 4: SOURCE, DESTINATION, COUNT, COMMAND and their high halves after them. */
  private readonly dma = new Uint32Array(8);

  constructor(options: EduOptions) {
    this.port = options.port;
    const delay = options.dmaDelayMs ?? 0;
    if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) {
      throw new RangeError(`EduDevice option dmaDelayMs: expected a number of ms >= 0, got ${String(delay)}`);
    }
    this.dmaDelayMs = delay;
    const mask = options.dmaMask ?? EDU_DEFAULT_DMA_MASK;
    if (typeof mask !== "bigint" || mask < 0n || mask >= 1n << 64n) {
      throw new RangeError(`EduDevice option dmaMask: expected a 64-bit bigint, got ${String(mask)}`);
    }
    this.dmaMaskLow = Number(mask & 0xffff_ffffn);
    this.dmaMaskHigh = Number(mask >> 32n);
  }

  get interruptStatusBits(): number {
    return this.interruptStatus;
  }

  /**
   * The registers, buffer and counters. A transfer or factorial in progress is the platform's
   * pending action, not state here: a machine is saved only when none is pending.
   */
  saveState(): EduState {
    const { dmaTransfers, dmaFailures, rangeErrors, interruptsSent } = this.stats;
    return {
      liveness: this.liveness, factorial: this.factorial, status: this.status, interruptStatus: this.interruptStatus,
      dma: Array.from(this.dma), buffer: Array.from(this.buffer), stats: { dmaTransfers, dmaFailures, rangeErrors, interruptsSent },
    };
  }

  /** Why `state` cannot be restored (the first wrong field), or undefined. */
  checkState(state: unknown): string | undefined {
    if (typeof state !== "object" || state === null) return "edu's state is missing";
    const e = state as Record<string, unknown>;
    for (const key of ["liveness", "factorial", "status", "interruptStatus"]) if (!isDword(e[key])) return `edu's ${key} is not a dword`;
    if (!Array.isArray(e.dma) || e.dma.length !== 8 || !e.dma.every(isDword)) return "edu's DMA registers are not 8 dwords";
    if (!Array.isArray(e.buffer) || e.buffer.length !== EDU_BUFFER_SIZE || !e.buffer.every((b) => isDword(b) && b <= 0xff)) return `edu's buffer is not ${EDU_BUFFER_SIZE} bytes`;
    const stats = e.stats as Record<string, unknown> | null;
    if (typeof stats !== "object" || stats === null) return "edu's counters are missing";
    for (const key of ["dmaTransfers", "dmaFailures", "rangeErrors", "interruptsSent"]) if (!isCount(stats[key])) return `edu's counter ${key} is not a count`;
    return undefined;
  }

  /** Takes a saved state (checked first by checkState: dwords, 8 DMA halves, 4096 buffer bytes). */
  restoreState(state: EduState): void {
    this.liveness = state.liveness >>> 0;
    this.factorial = state.factorial >>> 0;
    this.status = state.status >>> 0;
    this.interruptStatus = state.interruptStatus >>> 0;
    this.dma.set(state.dma);
    this.buffer.set(state.buffer);
    Object.assign(this.stats, state.stats, { lastDmaResult: undefined });
  }

  readMmio(offset: number, size: 1 | 2 | 4): number {
    const value = size === 4 ? this.readRegister(offset) : -1;
    return value < 0 ? mmioAllOnes(size) : value;
  }

  writeMmio(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    const low = value >>> 0;
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
    if (offset < DMA_FIRST || offset >= DMA_END || offset & 3) return;
    if (this.dmaRunning) return; // registers are frozen while a transfer is under way
    const half = (offset - DMA_FIRST) >> 2;
    this.dma[half] = low;
    if (half & 1) return; // bits 63:32
    this.dma[half + 1] = 0; // a 4-byte write to the low half sets the whole register (QEMU)
    if (half === COMMAND && (low & EduDmaCommand.START) !== 0) {
      this.port.scheduler.after(this.dmaDelayMs, () => this.runDma());
    }
  }

  /** The dword at `offset`, or -1 where no register answers. */
  private readRegister(offset: number): number {
    switch (offset) {
      case EduReg.ID:
        return EDU_ID;
      case EduReg.LIVENESS:
        return this.liveness;
      case EduReg.FACTORIAL:
        return this.factorial;
      case EduReg.STATUS:
        return this.status;
      case EduReg.INTERRUPT_STATUS:
        return this.interruptStatus;
    }
    if (offset >= DMA_FIRST && offset < DMA_END && (offset & 3) === 0) return this.dma[(offset - DMA_FIRST) >> 2]!;
    return -1;
  }

  private get dmaRunning(): boolean {
    return (this.dma[COMMAND]! & EduDmaCommand.START) !== 0;
  }

  /** Buffer offset of `count` bytes at the device address in `dma[register]` (two halves), or -1 if they are not inside the buffer. */
  private bufferOffset(register: number): number {
    const dma = this.dma;
    if (dma[register + 1] !== 0 || dma[COUNT + 1] !== 0) return -1;
    const start = dma[register]! - EDU_BUFFER_ADDRESS;
    const count = dma[COUNT]!;
    if (start < 0 || count > EDU_BUFFER_SIZE || start + count > EDU_BUFFER_SIZE) return -1;
    return start;
  }

  private runDma(): void {
    if (!this.dmaRunning) return;
    const dma = this.dma;
    const count = dma[COUNT]!;
    const toRam = (dma[COMMAND]! & EduDmaCommand.TO_RAM) !== 0;
    const offset = this.bufferOffset(toRam ? SOURCE : DESTINATION);
    if (offset < 0) {
      this.stats.rangeErrors++;
    } else if (count > 0) {
      const ram = toRam ? DESTINATION : SOURCE;
      const address = busAddress(dma[ram]! & this.dmaMaskLow, dma[ram + 1]! & this.dmaMaskHigh);
      const window = this.buffer.subarray(offset, offset + count);
      const result = toRam ? this.port.dma.write(address, window) : this.port.dma.read(address, window);
      this.stats.lastDmaResult = result;
      if (result.ok) this.stats.dmaTransfers++;
      else this.stats.dmaFailures++;
    }
    dma[COMMAND] = dma[COMMAND]! & ~EduDmaCommand.START;
    if ((dma[COMMAND]! & EduDmaCommand.IRQ) !== 0) this.raiseInterrupt(EduInterrupt.DMA);
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
