/**
 * A split virtqueue as the device sees it (Virtio 1.2 §2.7): the descriptor table, the available
 * ring the driver fills, the used ring the device fills. Every access is a DMA through the
 * function's handle, so the IOMMU translates each one; nothing here touches memory otherwise.
 *
 * Errors are values: a DMA that fails and a ring that breaks the rules (a head or next index
 * outside the table, a chain longer than the queue, an indirect descriptor without
 * VIRTIO_F_INDIRECT_DESC, the available index running ahead by more than the queue size) are
 * reported in `failure` and stop the queue's processing; the transport then asks for a reset.
 * Scratch buffers are allocated once; a chain is read into arrays sized for the largest queue.
 * Addresses are numbers (BusAddress): a bigint exists only for one at or above 2^53, which a
 * driver has no reason to give (the IOMMU then faults it, and the fault record is exact).
 */
import type { DmaResult } from "../../vtd-device/dma-result.ts";
import { busAddress, busAddressPlus, type BusAddress, type DmaHandle } from "../bus.ts";
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VirtqAvail, VirtqDesc, VirtqDescFlags, VirtqUsed } from "./virtio-spec.ts";

/**
 * Why a queue stopped: a DMA the IOMMU (or the bus) refused, or a driver's ring mistake. The
 * address of a failed DMA is kept as an exact bigint (made only when a DMA fails).
 */
export type QueueFailure =
  | { kind: "dma"; what: string; address: bigint; result: DmaResult }
  | { kind: "ring"; what: string };

/** A DMA failure record (allocates: only on the failure path). */
export function dmaFailureOf(what: string, address: BusAddress, result: DmaResult): QueueFailure {
  return { kind: "dma", what, address: BigInt(address), result };
}

/** Marks a buffer address at or above 2^53 in `DescriptorChain.addresses`: the address is in `wide`. */
const WIDE = -1;

/** One descriptor chain, read from the table: buffers in chain order. Reused between chains. */
export class DescriptorChain {
  head = 0;
  count = 0;
  /** Buffer addresses below 2^53; WIDE where the address is a bigint in `wide`. */
  readonly addresses: Float64Array;
  /** The rare buffer addresses at or above 2^53, at their descriptor's index. */
  readonly wide: bigint[];
  readonly lengths: Uint32Array;
  readonly writable: Uint8Array;

  constructor(maxLength: number) {
    this.addresses = new Float64Array(maxLength);
    this.wide = new Array<bigint>(maxLength).fill(0n);
    this.lengths = new Uint32Array(maxLength);
    this.writable = new Uint8Array(maxLength);
  }

  /** The bus address of buffer `i`. */
  address(i: number): BusAddress {
    const address = this.addresses[i]!;
    return address === WIDE ? this.wide[i]! : address;
  }

  /** Sets buffer `n`'s address from the descriptor's two halves. */
  setAddress(n: number, low: number, high: number): void {
    const address = busAddress(low, high);
    if (typeof address === "number") {
      this.addresses[n] = address;
    } else {
      this.addresses[n] = WIDE;
      this.wide[n] = address;
    }
  }
}

/** The three areas of a split queue (Virtio 1.2 §2.7), in the order the common configuration lists them. */
export const QueueArea = { DESCRIPTORS: 0, DRIVER: 1, DEVICE: 2 } as const;
export type QueueArea = (typeof QueueArea)[keyof typeof QueueArea];

export type PopResult = "chain" | "empty" | "failed";

/** What a queue holds between two requests (save and restore; checked in virtio-state.ts). */
export interface VirtqueueState {
  size: number;
  enabled: boolean;
  /** The areas' addresses as the driver wrote them: low and high dword of each QueueArea. */
  areas: number[];
  lastAvailIdx: number;
  usedIdx: number;
  /** Why the queue stopped (its DEVICE_NEEDS_RESET), or null. */
  failure: string | null;
}

export class SplitVirtqueue {
  /** Queue size the driver configured (queue_size); the device's maximum at reset. */
  size: number;
  enabled = false;
  failure: QueueFailure | undefined;
  /** The areas' addresses as the driver wrote them: low and high dword of each QueueArea. */
  private readonly areaHalves = new Uint32Array(6);
  private desc: BusAddress = 0;
  private driver: BusAddress = 0;
  private device: BusAddress = 0;
  private lastAvailIdx = 0;
  private usedIdx = 0;
  private readonly scratch = new Uint8Array(VirtqDesc.SIZE);
  private readonly scratchView = new DataView(this.scratch.buffer);
  private readonly word = this.scratch.subarray(0, 2);
  private readonly usedElem = this.scratch.subarray(0, VirtqUsed.ELEM_SIZE);

  constructor(
    readonly index: number,
    readonly maxSize: number,
    private readonly dma: DmaHandle,
  ) {
    this.size = maxSize;
  }

  /** Back to the reset state (Virtio 1.2 §4.1.4.3: queue_size reads the maximum again). */
  reset(): void {
    this.size = this.maxSize;
    this.enabled = false;
    this.areaHalves.fill(0);
    this.desc = this.driver = this.device = 0;
    this.failure = undefined;
    this.lastAvailIdx = this.usedIdx = 0;
  }

  saveState(): VirtqueueState {
    const { size, enabled, lastAvailIdx, usedIdx } = this;
    return { size, enabled, areas: Array.from(this.areaHalves), lastAvailIdx, usedIdx, failure: this.failure?.what ?? null };
  }

  /**
   * Takes a checked state. A failure comes back as a ring failure carrying the saved reason (a
   * DMA failure's address and result are diagnostics, not guest-visible): the queue stays stopped.
   */
  restoreState(state: VirtqueueState): void {
    this.size = state.size;
    this.enabled = state.enabled;
    for (let area = 0; area < 3; area++) {
      this.setAreaHalf(area as QueueArea, false, state.areas[2 * area]!);
      this.setAreaHalf(area as QueueArea, true, state.areas[2 * area + 1]!);
    }
    this.lastAvailIdx = state.lastAvailIdx;
    this.usedIdx = state.usedIdx;
    this.failure = state.failure === null ? undefined : { kind: "ring", what: state.failure };
  }

  /** The descriptor table's bus address (queue_desc). */
  get descTable(): BusAddress {
    return this.desc;
  }

  /** The available ring's bus address (queue_driver). */
  get driverArea(): BusAddress {
    return this.driver;
  }

  /** The used ring's bus address (queue_device). */
  get deviceArea(): BusAddress {
    return this.device;
  }

  /** A dword of an area's address, as the common configuration reads it. */
  areaHalf(area: QueueArea, high: boolean): number {
    return this.areaHalves[2 * area + (high ? 1 : 0)]!;
  }

  /** Sets a dword of an area's address (the common configuration allows it while the queue is disabled). */
  setAreaHalf(area: QueueArea, high: boolean, value: number): void {
    const halves = this.areaHalves;
    halves[2 * area + (high ? 1 : 0)] = value;
    const address = busAddress(halves[2 * area]!, halves[2 * area + 1]!);
    if (area === QueueArea.DESCRIPTORS) this.desc = address;
    else if (area === QueueArea.DRIVER) this.driver = address;
    else this.device = address;
  }

  /**
   * Why the driver's configuration cannot be enabled (Virtio 1.2 §2.7: power-of-two size up to
   * the maximum; descriptor table 16-byte, available ring 2-byte, used ring 4-byte aligned), or
   * undefined when it can.
   */
  configurationError(): string | undefined {
    const size = this.size;
    if (size === 0 || size > this.maxSize || (size & (size - 1)) !== 0) return `queue ${this.index}: size ${size} is not a power of two in 1..${this.maxSize}`;
    const low = (area: QueueArea) => this.areaHalves[2 * area]!;
    if (low(QueueArea.DESCRIPTORS) % 16 !== 0) return `queue ${this.index}: descriptor table 0x${this.desc.toString(16)} is not 16-byte aligned`;
    if (low(QueueArea.DRIVER) % 2 !== 0) return `queue ${this.index}: available ring 0x${this.driver.toString(16)} is not 2-byte aligned`;
    if (low(QueueArea.DEVICE) % 4 !== 0) return `queue ${this.index}: used ring 0x${this.device.toString(16)} is not 4-byte aligned`;
    return undefined;
  }

  /** Reads the next available chain into `chain`; "empty" when the driver has made none available. */
  pop(chain: DescriptorChain): PopResult {
    if (this.failure) return "failed";
    const availIdx = this.read16(busAddressPlus(this.driver, VirtqAvail.IDX), "available ring idx");
    if (availIdx < 0) return "failed";
    const waiting = (availIdx - this.lastAvailIdx) & 0xffff;
    if (waiting === 0) return "empty";
    if (waiting > this.size) {
      this.ringError(`available idx ${availIdx} is ${waiting} ahead of the device's ${this.lastAvailIdx} (queue size ${this.size})`);
      return "failed";
    }
    const slot = this.lastAvailIdx % this.size;
    const head = this.read16(busAddressPlus(this.driver, VirtqAvail.RING + 2 * slot), "available ring entry");
    if (head < 0) return "failed";
    if (!this.readChain(head, chain)) return "failed";
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    return "chain";
  }

  /** Puts a used element {head, bytes written} in the used ring; `publishUsed` makes it visible. */
  pushUsed(head: number, writtenLength: number): boolean {
    if (this.failure) return false;
    const slot = this.usedIdx % this.size;
    this.scratchView.setUint32(0, head, true);
    this.scratchView.setUint32(4, writtenLength >>> 0, true);
    const at = busAddressPlus(this.device, VirtqUsed.RING + VirtqUsed.ELEM_SIZE * slot);
    if (!this.dmaWrite(at, this.usedElem, "used ring element")) return false;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    return true;
  }

  /** Writes used.idx after the elements (Virtio 1.2 §2.7.8.2: the driver reads idx, then the elements). */
  publishUsed(): boolean {
    if (this.failure) return false;
    this.scratchView.setUint16(0, this.usedIdx, true);
    return this.dmaWrite(busAddressPlus(this.device, VirtqUsed.IDX), this.word, "used ring idx");
  }

  /** Virtio 1.2 §2.7.7: without VIRTIO_F_EVENT_IDX, avail.flags bit 0 asks the device not to interrupt. */
  driverWantsInterrupt(): boolean | undefined {
    const flags = this.read16(busAddressPlus(this.driver, VirtqAvail.FLAGS), "available ring flags");
    if (flags < 0) return undefined;
    return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  private readChain(head: number, chain: DescriptorChain): boolean {
    chain.head = head;
    chain.count = 0;
    let index = head;
    for (;;) {
      if (index >= this.size) return this.ringError(`descriptor index ${index} outside the table of ${this.size}`);
      if (chain.count === this.size) return this.ringError(`the chain from head ${head} is longer than the queue (a loop?)`);
      if (!this.dmaRead(busAddressPlus(this.desc, VirtqDesc.SIZE * index), this.scratch, "descriptor")) return false;
      const flags = this.scratchView.getUint16(VirtqDesc.FLAGS, true);
      if (flags & VirtqDescFlags.INDIRECT) return this.ringError(`descriptor ${index} is indirect, but VIRTIO_F_INDIRECT_DESC was not offered`);
      const n = chain.count++;
      chain.setAddress(n, this.scratchView.getUint32(VirtqDesc.ADDR, true), this.scratchView.getUint32(VirtqDesc.ADDR + 4, true));
      chain.lengths[n] = this.scratchView.getUint32(VirtqDesc.LEN, true);
      chain.writable[n] = flags & VirtqDescFlags.WRITE ? 1 : 0;
      if (!(flags & VirtqDescFlags.NEXT)) return true;
      index = this.scratchView.getUint16(VirtqDesc.NEXT, true);
    }
  }

  /** The little-endian u16 at `address`, or -1 after a DMA failure. */
  private read16(address: BusAddress, what: string): number {
    if (!this.dmaRead(address, this.word, what)) return -1;
    return this.scratchView.getUint16(0, true);
  }

  private dmaRead(address: BusAddress, into: Uint8Array, what: string): boolean {
    const result = this.dma.read(address, into);
    if (result.ok) return true;
    this.failure = dmaFailureOf(`queue ${this.index}: read of the ${what}`, address, result);
    return false;
  }

  private dmaWrite(address: BusAddress, data: Uint8Array, what: string): boolean {
    const result = this.dma.write(address, data);
    if (result.ok) return true;
    this.failure = dmaFailureOf(`queue ${this.index}: write of the ${what}`, address, result);
    return false;
  }

  private ringError(what: string): false {
    this.failure = { kind: "ring", what: `queue ${this.index}: ${what}` };
    return false;
  }
}
