/**
 * The virtio PCI common configuration structure (Virtio 1.2 §4.1.4.3) and what its writes do:
 * feature negotiation (§2.2, §3.1.1), the device status state machine (§2.1), reset (§2.4) and
 * virtqueue configuration (§4.1.5.1.3). No MSI-X: both vector fields read VIRTIO_MSI_NO_VECTOR
 * and ignore writes, so drivers fall back to INTx (or the function's MSI capability).
 *
 * Guest mistakes never throw. Driver status bits are sticky (§2.1.1: the driver MUST NOT clear
 * a bit; only writing 0 resets). FEATURES_OK stays clear when the driver accepted a feature that
 * was not offered or did not accept VIRTIO_F_VERSION_1 (§6.1: the device MAY fail then); DRIVER_OK
 * stays clear before FEATURES_OK. Queue fields are read-only while the queue is enabled; enabling
 * a queue whose size or alignment breaks §2.7 asks for a reset (DEVICE_NEEDS_RESET).
 */
import type { DmaHandle } from "../bus.ts";
import { RegisterFields, type RegisterField } from "./register-fields.ts";
import { QueueArea, SplitVirtqueue, type VirtqueueState } from "./split-virtqueue.ts";
import { CommonCfg, DeviceStatus, Feature, VIRTIO_MSI_NO_VECTOR } from "./virtio-spec.ts";

const DRIVER_STATUS_BITS = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK | DeviceStatus.FEATURES_OK | DeviceStatus.FAILED;

export interface CommonConfigEvents {
  /** The driver wrote 0 to device_status: everything else (ISR, INTx, the device) resets too. */
  reset(): void;
  /** DRIVER_OK was just set: the device is live. */
  driverOk(): void;
  /** A driver mistake that needs a reset (the transport sets DEVICE_NEEDS_RESET). */
  needsReset(what: string): void;
  /** FEATURES_OK was refused. */
  featuresRefused(what: string): void;
}

/** The common configuration's registers and queues (save and restore; checked in virtio-state.ts). */
export interface CommonConfigState {
  status: number;
  configGeneration: number;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  /** The driver's features as two dwords (bits 31:0, 63:32). */
  driverFeatures: number[];
  queueSelect: number;
  queues: VirtqueueState[];
}

export class CommonConfig {
  readonly queues: SplitVirtqueue[];
  readonly registers: RegisterFields;
  status = 0;
  configGeneration = 0;
  /** Feature bits as two dwords each (bits 31:0, 63:32): the feature registers read and write numbers. */
  private readonly deviceWords = new Uint32Array(2);
  private readonly driverWords = new Uint32Array(2);
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private queueSelect = 0;

  constructor(
    readonly deviceFeatures: bigint,
    queueCount: number,
    queueMaxSize: number,
    dma: DmaHandle,
    private readonly events: CommonConfigEvents,
  ) {
    this.queues = Array.from({ length: queueCount }, (_, i) => new SplitVirtqueue(i, queueMaxSize, dma));
    this.registers = new RegisterFields(this.fields(), CommonCfg.SIZE);
    this.deviceWords[0] = Number(BigInt.asUintN(32, deviceFeatures));
    this.deviceWords[1] = Number(BigInt.asUintN(32, deviceFeatures >> 32n));
  }

  /** The features the driver accepted so far. */
  get driverFeatures(): bigint {
    return (BigInt(this.driverWords[1]!) << 32n) | BigInt(this.driverWords[0]!);
  }

  /** The features both sides agreed on (valid once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.status & DeviceStatus.FEATURES_OK ? this.driverFeatures & this.deviceFeatures : 0n;
  }

  /** Virtio 1.2 §2.4: back to the state at power-on. */
  reset(): void {
    this.status = 0;
    this.driverWords.fill(0);
    this.deviceFeatureSelect = this.driverFeatureSelect = this.queueSelect = 0;
    for (const queue of this.queues) queue.reset();
  }

  saveState(): CommonConfigState {
    const { status, configGeneration, deviceFeatureSelect, driverFeatureSelect, queueSelect } = this;
    return { status, configGeneration, deviceFeatureSelect, driverFeatureSelect, driverFeatures: Array.from(this.driverWords), queueSelect, queues: this.queues.map((q) => q.saveState()) };
  }

  /** Takes a checked state. */
  restoreState(state: CommonConfigState): void {
    this.status = state.status;
    this.configGeneration = state.configGeneration;
    this.deviceFeatureSelect = state.deviceFeatureSelect;
    this.driverFeatureSelect = state.driverFeatureSelect;
    this.driverWords.set(state.driverFeatures);
    this.queueSelect = state.queueSelect;
    this.queues.forEach((queue, i) => queue.restoreState(state.queues[i]!));
  }

  private get selectedQueue(): SplitVirtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  private writeStatus(value: number): void {
    if ((value & 0xff) === 0) {
      this.events.reset();
      return;
    }
    const before = this.status;
    let next = before | (value & DRIVER_STATUS_BITS);
    if (next & DeviceStatus.FEATURES_OK && !(before & DeviceStatus.FEATURES_OK)) {
      const refusal = this.featureRefusal();
      if (refusal) {
        next &= ~DeviceStatus.FEATURES_OK;
        this.events.featuresRefused(refusal);
      }
    }
    if (!(next & DeviceStatus.FEATURES_OK)) next &= ~DeviceStatus.DRIVER_OK;
    this.status = next;
    if (next & DeviceStatus.DRIVER_OK && !(before & DeviceStatus.DRIVER_OK)) this.events.driverOk();
  }

  /** Why the driver's features cannot be accepted, or undefined when they can. */
  private featureRefusal(): string | undefined {
    const driver = this.driverWords;
    const device = this.deviceWords;
    if ((driver[0]! & ~device[0]!) !== 0 || (driver[1]! & ~device[1]!) !== 0) {
      return `driver accepted features not offered: 0x${(this.driverFeatures & ~this.deviceFeatures).toString(16)}`;
    }
    const version1 = Feature.VERSION_1;
    if (((driver[version1 >> 5]! >>> (version1 & 31)) & 1) === 0) return "driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)";
    return undefined;
  }

  private writeDriverFeature(value: number): void {
    if (this.status & DeviceStatus.FEATURES_OK || this.driverFeatureSelect > 1) return; // §3.1.1: negotiation is over
    this.driverWords[this.driverFeatureSelect] = value;
  }

  private writeQueueEnable(value: number): void {
    const queue = this.selectedQueue;
    if (!queue || queue.enabled || value !== 1) return; // writing 0 is not allowed (§4.1.4.3.2); ignored
    const error = queue.configurationError();
    if (error) this.events.needsReset(error);
    else queue.enabled = true;
  }

  /** queue_desc/driver/device as two dwords (numbers); writable only while the queue is disabled. */
  private queueAddressFields(offset: number, area: QueueArea): RegisterField[] {
    const half = (high: boolean): RegisterField => ({
      offset: offset + (high ? 4 : 0),
      width: 4,
      read: () => this.selectedQueue?.areaHalf(area, high) ?? 0,
      write: (value) => {
        const queue = this.selectedQueue;
        if (queue && !queue.enabled) queue.setAreaHalf(area, high, value);
      },
    });
    return [half(false), half(true)];
  }

  private fields(): RegisterField[] {
    const word = (features: Uint32Array, select: number) => (select > 1 ? 0 : features[select]!);
    return [
      { offset: CommonCfg.DEVICE_FEATURE_SELECT, width: 4, read: () => this.deviceFeatureSelect, write: (v) => (this.deviceFeatureSelect = v) },
      { offset: CommonCfg.DEVICE_FEATURE, width: 4, read: () => word(this.deviceWords, this.deviceFeatureSelect) },
      { offset: CommonCfg.DRIVER_FEATURE_SELECT, width: 4, read: () => this.driverFeatureSelect, write: (v) => (this.driverFeatureSelect = v) },
      { offset: CommonCfg.DRIVER_FEATURE, width: 4, read: () => word(this.driverWords, this.driverFeatureSelect), write: (v) => this.writeDriverFeature(v) },
      { offset: CommonCfg.CONFIG_MSIX_VECTOR, width: 2, read: () => VIRTIO_MSI_NO_VECTOR, write: () => {} },
      { offset: CommonCfg.NUM_QUEUES, width: 2, read: () => this.queues.length },
      { offset: CommonCfg.DEVICE_STATUS, width: 1, read: () => this.status, write: (v) => this.writeStatus(v) },
      { offset: CommonCfg.CONFIG_GENERATION, width: 1, read: () => this.configGeneration },
      { offset: CommonCfg.QUEUE_SELECT, width: 2, read: () => this.queueSelect, write: (v) => (this.queueSelect = v) },
      {
        offset: CommonCfg.QUEUE_SIZE,
        width: 2,
        read: () => this.selectedQueue?.size ?? 0, // §4.1.4.3: 0 for a queue that does not exist
        write: (v) => {
          const queue = this.selectedQueue;
          if (queue && !queue.enabled) queue.size = v;
        },
      },
      { offset: CommonCfg.QUEUE_MSIX_VECTOR, width: 2, read: () => VIRTIO_MSI_NO_VECTOR, write: () => {} },
      { offset: CommonCfg.QUEUE_ENABLE, width: 2, read: () => (this.selectedQueue?.enabled ? 1 : 0), write: (v) => this.writeQueueEnable(v) },
      { offset: CommonCfg.QUEUE_NOTIFY_OFF, width: 2, read: () => (this.selectedQueue ? this.queueSelect : 0) },
      ...this.queueAddressFields(CommonCfg.QUEUE_DESC, QueueArea.DESCRIPTORS),
      ...this.queueAddressFields(CommonCfg.QUEUE_DRIVER, QueueArea.DRIVER),
      ...this.queueAddressFields(CommonCfg.QUEUE_DEVICE, QueueArea.DEVICE),
    ];
  }
}
