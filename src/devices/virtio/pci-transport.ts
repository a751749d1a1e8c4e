/**
 * The virtio PCI transport of one function (Virtio 1.2 §4.1): BAR0 holds the common
 * configuration, the ISR status, the device configuration and the notification area
 * (pci-layout.ts). A notification only schedules the queue's work on the platform's scheduler;
 * the work (the device model's) runs at a safe point and raises interrupts there, never inside
 * an MMIO handler.
 *
 * Interrupts (§4.1.4.5, §4.1.5.3): each event sets its ISR bit; with the function's MSI enabled
 * an MSI is sent, otherwise INTx is asserted. Reading the ISR returns and clears it and deasserts
 * INTx. A device error (a DMA fault on the rings or on what a request cannot do without, or a
 * driver's ring mistake) sets DEVICE_NEEDS_RESET, stops all queue work until the driver resets
 * the device, and, once DRIVER_OK was set, sends a configuration change interrupt (§2.1.2). A
 * fault the device model answers itself (a request's data buffer: VIRTIO_BLK_S_IOERR) is only
 * counted.
 */
import { mmioAllOnes, type MmioRegion, type PciFunctionPort } from "../bus.ts";
import { CommonConfig, type CommonConfigState } from "./common-config.ts";
import { ISR_LENGTH, NOTIFY_OFF_MULTIPLIER, VirtioBar } from "./pci-layout.ts";
import type { QueueFailure, SplitVirtqueue } from "./split-virtqueue.ts";
import { CommonCfg, DeviceStatus, IsrStatus } from "./virtio-spec.ts";

/** What the transport needs from a device type (block, ...). */
export interface VirtioDeviceModel {
  /** The device-specific configuration structure (§4.1.4.6), as the driver reads it. */
  readonly config: Uint8Array;
  /** Processes `queue`'s available buffers; runs at a safe point while the device is live. */
  processQueue(queue: SplitVirtqueue): void;
  /** The driver reset the device. */
  reset(): void;
}

export interface VirtioTransportOptions {
  port: PciFunctionPort;
  deviceFeatures: bigint;
  queueCount: number;
  queueMaxSize: number;
}

export interface VirtioTransportStats {
  /** Queue notifications the driver wrote. */
  notifications: number;
  /** Interrupts sent (MSI) or INTx assertions. */
  interrupts: number;
  /** ISR reads that returned a non-zero status. */
  isrReads: number;
  resets: number;
  featureNegotiationFailures: number;
  /** Times DEVICE_NEEDS_RESET was set. */
  deviceErrors: number;
  /** DMA faults the device met: those that set DEVICE_NEEDS_RESET and those a request was failed for. */
  dmaFaults: number;
  /** The latest reason for DEVICE_NEEDS_RESET or a refused FEATURES_OK, for people reading logs. */
  lastError: string | undefined;
  lastQueueFailure: QueueFailure | undefined;
}

/** The transport's guest-visible state and counters (save and restore; checked in virtio-state.ts). */
export interface VirtioTransportState {
  common: CommonConfigState;
  isr: number;
  intxAsserted: boolean;
  /** The counters (the latest error as text; the latest queue failure is not kept). */
  stats: Omit<VirtioTransportStats, "lastError" | "lastQueueFailure"> & { lastError: string | null };
}

export class VirtioPciTransport implements MmioRegion {
  readonly common: CommonConfig;
  readonly stats: VirtioTransportStats = {
    notifications: 0,
    interrupts: 0,
    isrReads: 0,
    resets: 0,
    featureNegotiationFailures: 0,
    deviceErrors: 0,
    dmaFaults: 0,
    lastError: undefined,
    lastQueueFailure: undefined,
  };
  private model: VirtioDeviceModel | undefined;
  private isr = 0;
  private intxAsserted = false;
  private readonly scheduled: boolean[];
  private readonly runQueue: (() => void)[];
  private readonly port: PciFunctionPort;
  /** Actions given to the scheduler that have not run yet (queue work, a configuration change interrupt). */
  private pendingActions = 0;

  constructor(options: VirtioTransportOptions) {
    this.port = options.port;
    this.common = new CommonConfig(options.deviceFeatures, options.queueCount, options.queueMaxSize, options.port.dma, {
      reset: () => this.reset(),
      driverOk: () => this.common.queues.forEach((q) => this.schedule(q)),
      needsReset: (what) => this.setNeedsReset(what),
      featuresRefused: (what) => {
        this.stats.featureNegotiationFailures++;
        this.stats.lastError = what;
      },
    });
    this.scheduled = this.common.queues.map(() => false);
    this.runQueue = this.common.queues.map((queue) => () => {
      this.pendingActions--;
      this.scheduled[queue.index] = false;
      if (this.queueLive(queue)) this.model!.processQueue(queue);
    });
  }

  /** Connects the device type; called once by the device's constructor. */
  bind(model: VirtioDeviceModel): void {
    this.model = model;
  }

  get negotiatedFeatures(): bigint {
    return this.common.negotiatedFeatures;
  }

  get status(): number {
    return this.common.status;
  }

  get isrStatus(): number {
    return this.isr;
  }

  /**
   * The guest-visible state and the counters. Refused while work waits for the scheduler (a
   * notified queue, a configuration change interrupt): those are closures, not state.
   */
  saveState(): VirtioTransportState {
    if (this.pendingActions > 0) throw new Error(`cannot save now: ${this.pendingActions} virtio action(s) wait for a safe point (queue work, an interrupt); save after it ran`);
    const { lastError, lastQueueFailure: _, ...counters } = this.stats;
    return { common: this.common.saveState(), isr: this.isr, intxAsserted: this.intxAsserted, stats: { ...counters, lastError: lastError ?? null } };
  }

  /**
   * Takes a checked state. The INTx level is the device's view only: the platform restores the
   * line itself (v86 the interrupt controllers, the PCI bus its Interrupt Status bit).
   */
  restoreState(state: VirtioTransportState): void {
    this.common.restoreState(state.common);
    this.isr = state.isr;
    this.intxAsserted = state.intxAsserted;
    const { lastError, ...counters } = state.stats;
    Object.assign(this.stats, counters, { lastError: lastError ?? undefined, lastQueueFailure: undefined });
  }

  /** DRIVER_OK set, neither DEVICE_NEEDS_RESET nor FAILED, the queue enabled and not failed. */
  queueLive(queue: SplitVirtqueue): boolean {
    const status = this.common.status;
    return (status & (DeviceStatus.DRIVER_OK | DeviceStatus.DEVICE_NEEDS_RESET | DeviceStatus.FAILED)) === DeviceStatus.DRIVER_OK && queue.enabled && !queue.failure;
  }

  /** After the model put used elements: publish them and interrupt unless the driver said not to. */
  completeQueue(queue: SplitVirtqueue): void {
    if (!queue.publishUsed()) return this.queueFailed(queue);
    const wanted = queue.driverWantsInterrupt();
    if (wanted === undefined) return this.queueFailed(queue);
    if (wanted) this.interrupt(IsrStatus.QUEUE);
  }

  /** The queue hit a DMA fault or a ring error (in `queue.failure`): the device needs a reset. */
  queueFailed(queue: SplitVirtqueue): void {
    const failure = queue.failure;
    if (!failure) return;
    this.stats.lastQueueFailure = failure;
    if (failure.kind === "dma") this.stats.dmaFaults++;
    this.setNeedsReset(failure.what);
  }

  /** A device model's own DMA that it cannot answer (a request header, a status byte) failed while serving `queue`. */
  dmaFailed(queue: SplitVirtqueue, failure: QueueFailure): void {
    queue.failure = failure;
    this.queueFailed(queue);
  }

  readMmio(offset: number, size: 1 | 2 | 4): number {
    if (offset >= VirtioBar.COMMON && offset < VirtioBar.COMMON + CommonCfg.SIZE) return this.common.registers.read(offset - VirtioBar.COMMON, size);
    if (offset >= VirtioBar.ISR && offset < VirtioBar.ISR + ISR_LENGTH) return this.readIsr(offset - VirtioBar.ISR);
    const config = this.model?.config;
    if (config && offset >= VirtioBar.DEVICE && offset < VirtioBar.DEVICE + config.length) return this.readConfig(config, offset - VirtioBar.DEVICE, size);
    if (offset >= VirtioBar.NOTIFY && offset < VirtioBar.NOTIFY + this.common.queues.length * NOTIFY_OFF_MULTIPLIER) return 0;
    return mmioAllOnes(size);
  }

  writeMmio(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset >= VirtioBar.COMMON && offset < VirtioBar.COMMON + CommonCfg.SIZE) {
      this.common.registers.write(offset - VirtioBar.COMMON, size, value);
      return;
    }
    const notify = offset - VirtioBar.NOTIFY;
    if (notify >= 0 && notify % NOTIFY_OFF_MULTIPLIER === 0 && notify < this.common.queues.length * NOTIFY_OFF_MULTIPLIER) {
      // The address names the queue (VIRTIO_F_NOTIFICATION_DATA is not offered). A 16-bit write
      // arrives as two byte writes in v86; only the one at the queue's own offset counts.
      this.notify(notify / NOTIFY_OFF_MULTIPLIER);
    }
    // The ISR is read-only; the block device's configuration has nothing writable.
  }

  private notify(index: number): void {
    this.stats.notifications++;
    const queue = this.common.queues[index]!;
    if (this.queueLive(queue)) this.schedule(queue);
  }

  /** Runs the queue's work at the platform's next safe point (once, however often asked). */
  schedule(queue: SplitVirtqueue): void {
    if (this.scheduled[queue.index] || !this.queueLive(queue)) return;
    this.scheduled[queue.index] = true;
    this.pendingActions++;
    this.port.scheduler.after(0, this.runQueue[queue.index]!);
  }

  /** §4.1.4.5.1: reading the ISR status clears it (and so the interrupt). */
  private readIsr(offset: number): number {
    if (offset !== 0) return 0; // the upper bytes are reserved; the read of byte 0 clears
    const value = this.isr;
    this.isr = 0;
    if (value !== 0) this.stats.isrReads++;
    this.deassertIntx();
    return value;
  }

  /** Little-endian bytes of the device configuration (past its end: 0xff). */
  private readConfig(config: Uint8Array, offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= (offset + i < config.length ? config[offset + i]! : 0xff) << (8 * i);
    return value >>> 0;
  }

  private interrupt(bits: number): void {
    this.isr |= bits;
    this.stats.interrupts++;
    const interrupts = this.port.interrupts;
    if (interrupts.msiEnabled()) {
      interrupts.sendMsi();
    } else if (!this.intxAsserted) {
      this.intxAsserted = true;
      interrupts.setIntx(true);
    }
  }

  private deassertIntx(): void {
    if (!this.intxAsserted) return;
    this.intxAsserted = false;
    this.port.interrupts.setIntx(false);
  }

  /**
   * §2.1.2: DEVICE_NEEDS_RESET, and a configuration change interrupt once DRIVER_OK was set. The
   * interrupt goes through the scheduler: a driver's register write (inside an MMIO handler) can
   * get here too. A reset in between cancels it.
   */
  private setNeedsReset(what: string): void {
    this.stats.lastError = what;
    if (this.common.status & DeviceStatus.DEVICE_NEEDS_RESET) return;
    this.stats.deviceErrors++;
    this.common.status |= DeviceStatus.DEVICE_NEEDS_RESET;
    if (!(this.common.status & DeviceStatus.DRIVER_OK)) return;
    const resets = this.stats.resets;
    this.pendingActions++;
    this.port.scheduler.after(0, () => {
      this.pendingActions--;
      if (this.stats.resets === resets) this.interrupt(IsrStatus.DEVICE_CONFIGURATION);
    });
  }

  private reset(): void {
    this.stats.resets++;
    this.common.reset();
    this.isr = 0;
    this.deassertIntx();
    this.model?.reset();
  }
}
