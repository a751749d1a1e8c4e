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
 */
import type { DmaResult } from "../../vtd-device/dma-result.ts";
import type { DmaHandle } from "../bus.ts";
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VirtqAvail, VirtqDesc, VirtqDescFlags, VirtqUsed } from "./virtio-spec.ts";

/** Why a queue stopped: a DMA the IOMMU (or the bus) refused, or a driver's ring mistake. */
export type QueueFailure =
  | { kind: "dma"; what: string; address: bigint; result: DmaResult }
  | { kind: "ring"; what: string };

/** One descriptor chain, read from the table: buffers in chain order. Reused between chains. */
export class DescriptorChain {
  head = 0;
  count = 0;
  readonly addresses: bigint[];
  readonly lengths: Uint32Array;
  readonly writable: Uint8Array;

  constructor(maxLength: number) {
    this.addresses = new Array<bigint>(maxLength).fill(0n);
    this.lengths = new Uint32Array(maxLength);
    this.writable = new Uint8Array(maxLength);
  }
}

export type PopResult = "chain" | "empty" | "failed";

export class SplitVirtqueue {
  /** Queue size the driver configured (queue_size); the device's maximum at reset. */
  size: number;
  enabled = false;
  descTable = 0n;
  driverArea = 0n;
  deviceArea = 0n;
  failure: QueueFailure | undefined;
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
    this.descTable = this.driverArea = this.deviceArea = 0n;
    this.failure = undefined;
    this.lastAvailIdx = this.usedIdx = 0;
  }

  /**
   * Why the driver's configuration cannot be enabled (Virtio 1.2 §2.7: power-of-two size up to
   * the maximum; descriptor table 16-byte, available ring 2-byte, used ring 4-byte aligned), or
   * undefined when it can.
   */
  configurationError(): string | undefined {
    const size = this.size;
    if (size === 0 || size > this.maxSize || (size & (size - 1)) !== 0) return `queue ${this.index}: size ${size} is not a power of two in 1..${this.maxSize}`;
    if (this.descTable % 16n !== 0n) return `queue ${this.index}: descriptor table 0x${this.descTable.toString(16)} is not 16-byte aligned`;
    if (this.driverArea % 2n !== 0n) return `queue ${this.index}: available ring 0x${this.driverArea.toString(16)} is not 2-byte aligned`;
    if (this.deviceArea % 4n !== 0n) return `queue ${this.index}: used ring 0x${this.deviceArea.toString(16)} is not 4-byte aligned`;
    return undefined;
  }

  /** Reads the next available chain into `chain`; "empty" when the driver has made none available. */
  pop(chain: DescriptorChain): PopResult {
    if (this.failure) return "failed";
    const availIdx = this.read16(this.driverArea + BigInt(VirtqAvail.IDX), "available ring idx");
    if (availIdx < 0) return "failed";
    const waiting = (availIdx - this.lastAvailIdx) & 0xffff;
    if (waiting === 0) return "empty";
    if (waiting > this.size) {
      this.ringError(`available idx ${availIdx} is ${waiting} ahead of the device's ${this.lastAvailIdx} (queue size ${this.size})`);
      return "failed";
    }
    const slot = this.lastAvailIdx % this.size;
    const head = this.read16(this.driverArea + BigInt(VirtqAvail.RING + 2 * slot), "available ring entry");
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
    const at = this.deviceArea + BigInt(VirtqUsed.RING + VirtqUsed.ELEM_SIZE * slot);
    if (!this.dmaWrite(at, this.usedElem, "used ring element")) return false;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    return true;
  }

  /** Writes used.idx after the elements (Virtio 1.2 §2.7.8.2: the driver reads idx, then the elements). */
  publishUsed(): boolean {
    if (this.failure) return false;
    this.scratchView.setUint16(0, this.usedIdx, true);
    return this.dmaWrite(this.deviceArea + BigInt(VirtqUsed.IDX), this.word, "used ring idx");
  }

  /** Virtio 1.2 §2.7.7: without VIRTIO_F_EVENT_IDX, avail.flags bit 0 asks the device not to interrupt. */
  driverWantsInterrupt(): boolean | undefined {
    const flags = this.read16(this.driverArea + BigInt(VirtqAvail.FLAGS), "available ring flags");
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
      if (!this.dmaRead(this.descTable + BigInt(VirtqDesc.SIZE * index), this.scratch, "descriptor")) return false;
      const flags = this.scratchView.getUint16(VirtqDesc.FLAGS, true);
      if (flags & VirtqDescFlags.INDIRECT) return this.ringError(`descriptor ${index} is indirect, but VIRTIO_F_INDIRECT_DESC was not offered`);
      const n = chain.count++;
      chain.addresses[n] = this.scratchView.getBigUint64(VirtqDesc.ADDR, true);
      chain.lengths[n] = this.scratchView.getUint32(VirtqDesc.LEN, true);
      chain.writable[n] = flags & VirtqDescFlags.WRITE ? 1 : 0;
      if (!(flags & VirtqDescFlags.NEXT)) return true;
      index = this.scratchView.getUint16(VirtqDesc.NEXT, true);
    }
  }

  /** The little-endian u16 at `address`, or -1 after a DMA failure. */
  private read16(address: bigint, what: string): number {
    if (!this.dmaRead(address, this.word, what)) return -1;
    return this.scratchView.getUint16(0, true);
  }

  private dmaRead(address: bigint, into: Uint8Array, what: string): boolean {
    const result = this.dma.read(address, into);
    if (result.ok) return true;
    this.failure = { kind: "dma", what: `queue ${this.index}: read of the ${what}`, address, result };
    return false;
  }

  private dmaWrite(address: bigint, data: Uint8Array, what: string): boolean {
    const result = this.dma.write(address, data);
    if (result.ok) return true;
    this.failure = { kind: "dma", what: `queue ${this.index}: write of the ${what}`, address, result };
    return false;
  }

  private ringError(what: string): false {
    this.failure = { kind: "ring", what: `queue ${this.index}: ${what}` };
    return false;
  }
}
