/**
 * A virtio block device (Virtio 1.2 §5.2) on the modern PCI transport, backed by a RAM disk the
 * embedder gives. It offers VIRTIO_F_VERSION_1 and VIRTIO_F_ACCESS_PLATFORM, so a Linux driver
 * maps every ring and buffer through the DMA API and therefore through the IOMMU; the device
 * reaches them only through its DMA handle (its requester id, translated by the unit).
 *
 * Offered: SEG_MAX (queue size - 2: a request's header and status descriptors plus its data fit
 * one queue without indirect descriptors), BLK_SIZE (512), FLUSH (answered at once: the disk is
 * RAM), RO when asked. Not offered: INDIRECT_DESC, EVENT_IDX, MQ, discard, write zeroes.
 * Requests: IN, OUT, FLUSH, GET_ID. A request the device cannot serve (a short header, data not
 * in whole sectors, a range past the end, a write to a read-only disk, a readable descriptor
 * after a writable one) completes with VIRTIO_BLK_S_IOERR; an unknown type with
 * VIRTIO_BLK_S_UNSUPP.
 *
 * DMA faults (Virtio 1.2 §5.2.6: IOERR is "device or driver error"; §2.1: DEVICE_NEEDS_RESET is
 * for "an error from which it can't recover"). A fault on a request's data buffer, once its
 * descriptors and header were read, fails that request alone: VIRTIO_BLK_S_IOERR in its status
 * byte, the used element (length 1: the status byte), the interrupt, and the device goes on. The
 * bytes before the fault may have moved (an IN's buffer partly filled, an OUT's sectors partly
 * written), as with a failed transfer on a real disk. A fault on the rings, a descriptor, the
 * header or the status byte leaves the device no way to answer: DEVICE_NEEDS_RESET.
 */
import { busAddressPlus, type MmioRegion, type PciFunctionPort } from "../bus.ts";
import type { PciFunctionIdentity } from "../pci-config.ts";
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { virtioPciIdentity } from "./pci-layout.ts";
import { VirtioPciTransport, type VirtioTransportStats } from "./pci-transport.ts";
import { DescriptorChain, dmaFailureOf, type QueueFailure, type SplitVirtqueue } from "./split-virtqueue.ts";
import { BLK_COUNTERS, checkVirtioBlkState, fillDisk, sparseDisk, type VirtioBlkState } from "./virtio-state.ts";
import {
  BLK_ID_BYTES,
  BLK_SECTOR_SIZE,
  BlkConfig,
  BlkFeature,
  BlkReqHeader,
  BlkReqType,
  BlkStatus,
  Feature,
  featureBit,
  VIRTQ_MAX_SIZE,
  VirtioDeviceType,
} from "./virtio-spec.ts";

/** At most 128: SeaBIOS's virtio driver refuses bigger queues. */
export const VIRTIO_BLK_DEFAULT_QUEUE_SIZE = 128;
export const VIRTIO_BLK_DEFAULT_SERIAL = "v86-vtd-virtio-blk";
/** PCI class: mass storage controller (0x01), other (0x80). */
const MASS_STORAGE_OTHER = 0x018000;

/** The PCI identity of a virtio-blk function with BAR0 (16 KiB) at `bar0Address`. */
export function virtioBlkPciIdentity(bar0Address: number): PciFunctionIdentity {
  return virtioPciIdentity({ deviceType: VirtioDeviceType.BLOCK, classCode: MASS_STORAGE_OTHER, deviceConfigLength: BlkConfig.SIZE, queueCount: 1 }, bar0Address);
}

/**
 * One request as the device is about to serve it: its chain and header were read, no data has
 * moved. Built only for a hook (bigints here are the test-facing edge, not the request path).
 */
export interface VirtioBlkRequest {
  /** The chain's head descriptor index (the id the used element will carry). */
  head: number;
  /** The header's type (VIRTIO_BLK_T_*) and sector. */
  type: number;
  sector: bigint;
  /** The chain's buffers in order: the header first, the status byte the last writable byte. */
  buffers: { address: bigint; length: number; writable: boolean }[];
}

/**
 * A fault-injection hook for tests: called for each request whose header was read, before any
 * of its data moves. It may change what the device's DMA will meet (say, unmap a data buffer in
 * the guest's IOMMU tables) and return a function the device calls once the request is finished
 * (its status written or its failure met), before it is marked used. Not for production use.
 */
export type VirtioBlkRequestHook = (request: VirtioBlkRequest) => void | (() => void);

export interface VirtioBlkOptions {
  port: PciFunctionPort;
  /** The disk's bytes (a whole number of 512-byte sectors); IN reads them, OUT writes them in place. */
  disk: Uint8Array;
  /** Offer VIRTIO_BLK_F_RO and refuse writes. Default false. */
  readOnly?: boolean;
  /** The GET_ID string: printable ASCII, at most 20 bytes. Default "v86-vtd-virtio-blk". */
  serial?: string;
  /** The queue's maximum size: a power of two in 4..32768. Default 128. */
  queueSize?: number;
  /** Fault injection for tests (VirtioBlkRequestHook); also settable later as `device.beforeRequest`. */
  beforeRequest?: VirtioBlkRequestHook;
}

export interface VirtioBlkStats extends Omit<VirtioTransportStats, "lastQueueFailure"> {
  /** Descriptor chains completed (any type, any status). */
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  getIds: number;
  /** Bytes the device wrote to guest memory for IN requests. */
  bytesRead: number;
  /** Bytes the device took from guest memory for OUT requests. */
  bytesWritten: number;
  ioErrors: number;
  unsupported: number;
  /** Chains without a device-writable byte for the status: completed with length 0. */
  malformed: number;
  /** Requests failed with VIRTIO_BLK_S_IOERR because a DMA of their data buffer faulted (also in ioErrors and dmaFaults). */
  dataFaults: number;
  /** The latest such fault: which buffer, its IOVA, the unit's answer. */
  lastDataFault: QueueFailure | undefined;
}

type BlkCounters = Omit<VirtioBlkStats, keyof Omit<VirtioTransportStats, "lastQueueFailure">>;

/** Where a request's parts are: the readable part is [0, firstWritable), the writable part the rest. */
interface RequestLayout {
  firstWritable: number;
  readableBytes: number;
  writableBytes: number;
  ordered: boolean;
}

export class VirtioBlkDevice implements MmioRegion {
  readonly transport: VirtioPciTransport;
  readonly config = new Uint8Array(BlkConfig.SIZE);
  private readonly port: PciFunctionPort;
  private readonly disk: Uint8Array;
  private readonly readOnly: boolean;
  private readonly id = new Uint8Array(BLK_ID_BYTES);
  private readonly chain: DescriptorChain;
  private readonly header = new Uint8Array(BlkReqHeader.SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly statusByte = new Uint8Array(1);
  private readonly layout: RequestLayout = { firstWritable: 0, readableBytes: 0, writableBytes: 0, ordered: true };
  private readonly counters: BlkCounters = {
    requests: 0, reads: 0, writes: 0, flushes: 0, getIds: 0, bytesRead: 0, bytesWritten: 0, ioErrors: 0, unsupported: 0, malformed: 0,
    dataFaults: 0, lastDataFault: undefined,
  };
  private currentQueue: SplitVirtqueue | undefined;
  /** The failure of the latest `transfer` that returned false. */
  private transferFailure: QueueFailure | undefined;
  /** Fault injection for tests: see VirtioBlkRequestHook. */
  beforeRequest: VirtioBlkRequestHook | undefined;

  constructor(options: VirtioBlkOptions) {
    const { disk } = options;
    if (!(disk instanceof Uint8Array)) throw new TypeError("VirtioBlkDevice option disk: expected a Uint8Array");
    if (disk.length === 0 || disk.length % BLK_SECTOR_SIZE !== 0) {
      throw new RangeError(`VirtioBlkDevice option disk: ${disk.length} bytes is not a whole, non-zero number of 512-byte sectors`);
    }
    const queueSize = options.queueSize ?? VIRTIO_BLK_DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > VIRTQ_MAX_SIZE || (queueSize & (queueSize - 1)) !== 0) {
      throw new RangeError(`VirtioBlkDevice option queueSize: ${queueSize} is not a power of two in 4..${VIRTQ_MAX_SIZE}`);
    }
    const serial = options.serial ?? VIRTIO_BLK_DEFAULT_SERIAL;
    if (typeof serial !== "string" || serial.length > BLK_ID_BYTES || !/^[\x20-\x7e]*$/.test(serial)) {
      throw new RangeError(`VirtioBlkDevice option serial: ${JSON.stringify(serial)} is not printable ASCII of at most ${BLK_ID_BYTES} bytes`);
    }
    this.port = options.port;
    this.disk = disk;
    this.readOnly = options.readOnly ?? false;
    for (let i = 0; i < serial.length; i++) this.id[i] = serial.charCodeAt(i);
    this.chain = new DescriptorChain(queueSize);
    this.beforeRequest = options.beforeRequest;

    let features = featureBit(Feature.VERSION_1) | featureBit(Feature.ACCESS_PLATFORM);
    features |= featureBit(BlkFeature.SEG_MAX) | featureBit(BlkFeature.BLK_SIZE) | featureBit(BlkFeature.FLUSH);
    if (this.readOnly) features |= featureBit(BlkFeature.RO);
    const view = new DataView(this.config.buffer);
    view.setBigUint64(BlkConfig.CAPACITY, BigInt(disk.length / BLK_SECTOR_SIZE), true);
    view.setUint32(BlkConfig.SEG_MAX, queueSize - 2, true);
    view.setUint32(BlkConfig.BLK_SIZE, BLK_SECTOR_SIZE, true);

    this.transport = new VirtioPciTransport({ port: options.port, deviceFeatures: features, queueCount: 1, queueMaxSize: queueSize });
    this.transport.bind({ config: this.config, processQueue: (queue) => this.processQueue(queue), reset: () => {} });
  }

  /** A snapshot of the device's counters. */
  get stats(): VirtioBlkStats {
    const { lastQueueFailure: _, ...transport } = this.transport.stats;
    return { ...transport, ...this.counters };
  }

  /**
   * Everything the guest can see (status, features, queues, ISR, configuration), the counters and
   * the disk's contents (sparse: virtio-state.ts). Refused (throws) while queue work or an
   * interrupt waits for the scheduler: requests are served whole at a safe point, so between
   * two safe points none is half done.
   */
  saveState(): VirtioBlkState {
    const transport = this.transport.saveState();
    const counters = Object.fromEntries(BLK_COUNTERS.map((key) => [key, this.counters[key]])) as VirtioBlkState["counters"];
    return { transport, counters, config: Array.from(this.config), disk: sparseDisk(this.disk) };
  }

  /** Why `state` cannot be restored into this device (the first wrong field), or undefined. */
  checkState(state: unknown): string | undefined {
    const common = this.transport.common;
    return checkVirtioBlkState(state, {
      queueCount: common.queues.length, queueMaxSize: this.chain.lengths.length, deviceFeatures: common.deviceFeatures, config: this.config, diskBytes: this.disk.length,
    });
  }

  /** Takes a saved state after checking all of it; a bad one throws a RangeError naming the field, and nothing changes. */
  restoreState(state: VirtioBlkState): void {
    const why = this.checkState(state);
    if (why) throw new RangeError(`virtio-blk state refused: ${why}`);
    this.transport.restoreState(state.transport);
    Object.assign(this.counters, state.counters, { lastDataFault: undefined });
    fillDisk(this.disk, state.disk);
  }

  readMmio(offset: number, size: 1 | 2 | 4): number {
    return this.transport.readMmio(offset, size);
  }

  writeMmio(offset: number, size: 1 | 2 | 4, value: number): void {
    this.transport.writeMmio(offset, size, value);
  }

  /**
   * Serves the available requests, then publishes them and interrupts (once per batch). At most
   * one queue's worth per run (our own writes may land in the rings a guest mapped over them):
   * more waiting is served by another run at the next safe point.
   */
  private processQueue(queue: SplitVirtqueue): void {
    const chain = this.chain;
    this.currentQueue = queue;
    let completed = 0;
    for (;;) {
      if (completed === queue.size) {
        this.transport.completeQueue(queue);
        this.transport.schedule(queue);
        return;
      }
      const popped = queue.pop(chain);
      if (popped === "empty") break;
      if (popped === "failed") return this.transport.queueFailed(queue);
      const written = this.serve(chain);
      if (written < 0) return; // the transport has set DEVICE_NEEDS_RESET
      if (!queue.pushUsed(chain.head, written)) return this.transport.queueFailed(queue);
      completed++;
    }
    if (completed > 0) this.transport.completeQueue(queue);
  }

  /** Serves one request; returns the bytes written to device-writable buffers, or -1 when the device needs a reset. */
  private serve(chain: DescriptorChain): number {
    this.counters.requests++;
    const layout = this.measure(chain);
    if (layout.writableBytes === 0) {
      this.counters.malformed++;
      return 0;
    }
    if (!layout.ordered || layout.readableBytes < BlkReqHeader.SIZE) return this.finish(chain, BlkStatus.IOERR, 0);
    if (!this.transfer(chain, 0, 0, this.header, false)) return this.stop();
    const type = this.headerView.getUint32(BlkReqHeader.TYPE, true);
    // The 64-bit sector as two dwords: no bigint on the request path.
    const sectorLow = this.headerView.getUint32(BlkReqHeader.SECTOR, true);
    const sectorHigh = this.headerView.getUint32(BlkReqHeader.SECTOR + 4, true);
    const hook = this.beforeRequest;
    if (!hook) return this.dispatch(chain, type, sectorLow, sectorHigh);
    const sector = (BigInt(sectorHigh) << 32n) | BigInt(sectorLow);
    const after = hook({ head: chain.head, type, sector, buffers: this.buffersOf(chain) });
    try {
      return this.dispatch(chain, type, sectorLow, sectorHigh);
    } finally {
      if (typeof after === "function") after();
    }
  }

  private dispatch(chain: DescriptorChain, type: number, sectorLow: number, sectorHigh: number): number {
    const layout = this.layout;
    const dataIn = layout.writableBytes - 1; // the last writable byte is the status
    switch (type) {
      case BlkReqType.IN: {
        this.counters.reads++;
        const start = this.diskRange(sectorLow, sectorHigh, dataIn);
        if (start < 0) return this.finish(chain, BlkStatus.IOERR, 0);
        if (!this.transfer(chain, layout.firstWritable, 0, this.disk.subarray(start, start + dataIn), true)) return this.dataFault(chain);
        this.counters.bytesRead += dataIn;
        return this.finish(chain, BlkStatus.OK, dataIn);
      }
      case BlkReqType.OUT: {
        this.counters.writes++;
        const length = layout.readableBytes - BlkReqHeader.SIZE;
        const start = this.diskRange(sectorLow, sectorHigh, length);
        if (start < 0 || this.readOnly) return this.finish(chain, BlkStatus.IOERR, 0);
        if (!this.transfer(chain, 0, BlkReqHeader.SIZE, this.disk.subarray(start, start + length), false)) return this.dataFault(chain);
        this.counters.bytesWritten += length;
        return this.finish(chain, BlkStatus.OK, 0);
      }
      case BlkReqType.FLUSH:
        this.counters.flushes++;
        return this.finish(chain, BlkStatus.OK, 0);
      case BlkReqType.GET_ID: {
        this.counters.getIds++;
        const length = Math.min(dataIn, BLK_ID_BYTES);
        if (!this.transfer(chain, layout.firstWritable, 0, this.id.subarray(0, length), true)) return this.dataFault(chain);
        return this.finish(chain, BlkStatus.OK, length);
      }
      default:
        return this.finish(chain, BlkStatus.UNSUPP, 0);
    }
  }

  /** A DMA of the request's data faulted (the unit has recorded it): the request fails, the device goes on. */
  private dataFault(chain: DescriptorChain): number {
    this.counters.dataFaults++;
    this.counters.lastDataFault = this.transferFailure;
    this.transport.stats.dmaFaults++;
    return this.finish(chain, BlkStatus.IOERR, 0);
  }

  /** A DMA the device cannot do without (header, status byte) faulted: DEVICE_NEEDS_RESET. */
  private stop(): -1 {
    this.transport.dmaFailed(this.currentQueue!, this.transferFailure!);
    return -1;
  }

  /** The chain as the hook sees it (allocates; only with a hook). */
  private buffersOf(chain: DescriptorChain): VirtioBlkRequest["buffers"] {
    const buffers: VirtioBlkRequest["buffers"] = [];
    for (let i = 0; i < chain.count; i++) buffers.push({ address: BigInt(chain.address(i)), length: chain.lengths[i]!, writable: chain.writable[i] === 1 });
    return buffers;
  }

  /**
   * Byte offset of `length` bytes at the sector whose dwords are given, or -1 when not whole
   * sectors or past the end. Numbers: the capacity is far below 2^53 sectors, so a sector with
   * a high dword of 2^21 or more is past the end, and below that it is exact.
   */
  private diskRange(sectorLow: number, sectorHigh: number, length: number): number {
    if (length % BLK_SECTOR_SIZE !== 0 || sectorHigh >= 0x20_0000) return -1;
    const capacity = this.disk.length / BLK_SECTOR_SIZE;
    const sector = sectorHigh * TWO_POW_32 + sectorLow;
    if (sector > capacity || length / BLK_SECTOR_SIZE > capacity - sector) return -1;
    return sector * BLK_SECTOR_SIZE;
  }

  /** Writes the status byte (the chain's last writable byte); returns the bytes written, -1 when that DMA faulted (DEVICE_NEEDS_RESET). */
  private finish(chain: DescriptorChain, status: number, dataBytes: number): number {
    if (status === BlkStatus.IOERR) this.counters.ioErrors++;
    if (status === BlkStatus.UNSUPP) this.counters.unsupported++;
    this.statusByte[0] = status;
    if (!this.transfer(chain, this.layout.firstWritable, this.layout.writableBytes - 1, this.statusByte, true)) return this.stop();
    return dataBytes + 1;
  }

  private measure(chain: DescriptorChain): RequestLayout {
    const layout = this.layout;
    layout.firstWritable = chain.count;
    layout.readableBytes = layout.writableBytes = 0;
    layout.ordered = true;
    for (let i = 0; i < chain.count; i++) {
      if (chain.writable[i]) {
        if (layout.firstWritable === chain.count) layout.firstWritable = i;
        layout.writableBytes += chain.lengths[i]!;
      } else {
        if (layout.firstWritable !== chain.count) layout.ordered = false; // Virtio 1.2 §2.7.4.2
        layout.readableBytes += chain.lengths[i]!;
      }
    }
    return layout;
  }

  /**
   * Copies between `bytes` and the chain's buffers from descriptor `first` on, skipping `skip`
   * bytes of them: into the device-writable buffers when `toGuest`, else out of the readable
   * ones (the other kind is passed over). False after a DMA fault, described in `transferFailure`;
   * the caller decides what it means.
   */
  private transfer(chain: DescriptorChain, first: number, skip: number, bytes: Uint8Array, toGuest: boolean): boolean {
    const dma = this.port.dma;
    const kind = toGuest ? 1 : 0;
    let done = 0;
    for (let i = first; i < chain.count && done < bytes.length; i++) {
      if (chain.writable[i] !== kind) continue;
      const length = chain.lengths[i]!;
      if (skip >= length) {
        skip -= length;
        continue;
      }
      const n = Math.min(length - skip, bytes.length - done);
      const address = busAddressPlus(chain.address(i), skip);
      const piece = bytes.subarray(done, done + n);
      const result = toGuest ? dma.write(address, piece) : dma.read(address, piece);
      if (!result.ok) {
        this.transferFailure = dmaFailureOf(`request from head ${chain.head}: ${toGuest ? "write to" : "read of"} buffer ${i}`, address, result);
        return false;
      }
      done += n;
      skip = 0;
    }
    return true;
  }
}
