/**
 * A virtio-blk function's saved state: the transport (common configuration, queues, ISR), the
 * counters, the device configuration and the disk's contents. The disk is kept sparse: the runs
 * of sectors that are not all zero and their bytes in one Uint8Array (a platform's state format
 * stores it as binary), so restoring writes zeros, then the runs, whatever the disk held before.
 *
 * `checkVirtioBlkState` checks every field against the device it would go into (same queue
 * count and maximum, same offered features, same configuration bytes, same disk size) and names
 * the first one that is wrong; nothing is restored from a state it refuses.
 */
import type { VirtioTransportState } from "./pci-transport.ts";
import { BLK_SECTOR_SIZE, DeviceStatus, IsrStatus } from "./virtio-spec.ts";
import { isCount, isDword, isDwords, isObject, isUint } from "../state-checks.ts";

/** The disk as runs of sectors that hold a non-zero byte. */
export interface SparseDisk {
  /** The disk's size in bytes. */
  bytes: number;
  /** Pairs: first sector, sector count; ascending, not touching. */
  runs: number[];
  /** The runs' sectors, one after the other. */
  data: Uint8Array;
}

/** The block device's own counters as saved (the latest data fault, a diagnostic, is not kept). */
export const BLK_COUNTERS = ["requests", "reads", "writes", "flushes", "getIds", "bytesRead", "bytesWritten", "ioErrors", "unsupported", "malformed", "dataFaults"] as const;
export type BlkCounterName = (typeof BLK_COUNTERS)[number];

export interface VirtioBlkState {
  transport: VirtioTransportState;
  counters: Record<BlkCounterName, number>;
  /** The device configuration (§5.2.4), as the driver reads it. */
  config: number[];
  disk: SparseDisk;
}

/** What a state must agree with: the device it would be restored into. */
export interface VirtioBlkShape {
  queueCount: number;
  queueMaxSize: number;
  deviceFeatures: bigint;
  config: Uint8Array;
  diskBytes: number;
}

const TRANSPORT_COUNTERS = ["notifications", "interrupts", "isrReads", "resets", "featureNegotiationFailures", "deviceErrors", "dmaFaults"] as const;
const DRIVER_STATUS_BITS = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK | DeviceStatus.FEATURES_OK | DeviceStatus.FAILED;


/** The disk's non-zero sectors as runs and their bytes. */
export function sparseDisk(disk: Uint8Array): SparseDisk {
  const sectors = disk.length / BLK_SECTOR_SIZE;
  const runs: number[] = [];
  let total = 0;
  for (let sector = 0; sector < sectors; sector++) {
    const start = sector * BLK_SECTOR_SIZE;
    let used = false;
    for (let i = start; i < start + BLK_SECTOR_SIZE; i++) {
      if (disk[i] !== 0) {
        used = true;
        break;
      }
    }
    if (!used) continue;
    const last = runs.length - 2;
    if (last >= 0 && runs[last]! + runs[last + 1]! === sector) runs[last + 1]!++;
    else runs.push(sector, 1);
    total++;
  }
  const data = new Uint8Array(total * BLK_SECTOR_SIZE);
  let at = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const bytes = disk.subarray(runs[r]! * BLK_SECTOR_SIZE, (runs[r]! + runs[r + 1]!) * BLK_SECTOR_SIZE);
    data.set(bytes, at);
    at += bytes.length;
  }
  return { bytes: disk.length, runs, data };
}

/** Writes a checked sparse disk into `disk`: zeros, then the runs. */
export function fillDisk(disk: Uint8Array, sparse: SparseDisk): void {
  disk.fill(0);
  let at = 0;
  for (let r = 0; r < sparse.runs.length; r += 2) {
    const length = sparse.runs[r + 1]! * BLK_SECTOR_SIZE;
    disk.set(sparse.data.subarray(at, at + length), sparse.runs[r]! * BLK_SECTOR_SIZE);
    at += length;
  }
}

function checkDisk(disk: unknown, diskBytes: number): string | undefined {
  if (!isObject(disk)) return "disk is missing";
  if (disk.bytes !== diskBytes) return `disk.bytes is ${String(disk.bytes)}, this device's disk has ${diskBytes}`;
  const runs = disk.runs;
  if (!Array.isArray(runs) || runs.length % 2 !== 0) return "disk.runs is not a list of (sector, count) pairs";
  const sectors = diskBytes / BLK_SECTOR_SIZE;
  let next = 0;
  let total = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const [first, count] = [runs[r], runs[r + 1]];
    if (!isUint(first, sectors) || !isUint(count, sectors) || count === 0 || first < next || first + count > sectors) {
      return `disk.runs pair ${r / 2} (${String(first)}, ${String(count)}) is not an ascending run of sectors within ${sectors}`;
    }
    next = first + count + 1;
    total += count;
  }
  if (!(disk.data instanceof Uint8Array) || disk.data.length !== total * BLK_SECTOR_SIZE) return `disk.data is not the runs' ${total * BLK_SECTOR_SIZE} bytes`;
  return undefined;
}

function checkQueue(queue: unknown, index: number, maxSize: number): string | undefined {
  const name = `transport.common.queues[${index}]`;
  if (!isObject(queue)) return `${name} is missing`;
  if (!isUint(queue.size, 0xffff)) return `${name}.size is not a 16-bit number`;
  if (typeof queue.enabled !== "boolean") return `${name}.enabled is not a boolean`;
  if (!isDwords(queue.areas, 6)) return `${name}.areas is not 6 dwords`;
  if (!isUint(queue.lastAvailIdx, 0xffff)) return `${name}.lastAvailIdx is not a 16-bit index`;
  if (!isUint(queue.usedIdx, 0xffff)) return `${name}.usedIdx is not a 16-bit index`;
  if (queue.failure !== null && typeof queue.failure !== "string") return `${name}.failure is neither null nor a reason`;
  if (queue.enabled) {
    // What the device checked when the driver enabled it (Virtio 1.2 §2.7).
    const size = queue.size;
    if (size === 0 || size > maxSize || (size & (size - 1)) !== 0) return `${name}.size ${size} of an enabled queue is not a power of two in 1..${maxSize}`;
    const [desc, driver, device] = [queue.areas[0]!, queue.areas[2]!, queue.areas[4]!];
    if (desc % 16 !== 0 || driver % 2 !== 0 || device % 4 !== 0) return `${name}.areas of an enabled queue are not aligned (16, 2, 4 bytes)`;
  }
  return undefined;
}

function checkTransport(transport: unknown, shape: VirtioBlkShape): string | undefined {
  if (!isObject(transport)) return "transport is missing";
  const common = transport.common;
  if (!isObject(common)) return "transport.common is missing";
  const status = common.status;
  if (!isUint(status, 0xff) || (status & ~(DRIVER_STATUS_BITS | DeviceStatus.DEVICE_NEEDS_RESET)) !== 0) return "transport.common.status is not a device status byte";
  if (status & DeviceStatus.DRIVER_OK && !(status & DeviceStatus.FEATURES_OK)) return "transport.common.status has DRIVER_OK without FEATURES_OK";
  if (!isUint(common.configGeneration, 0xff)) return "transport.common.configGeneration is not a byte";
  for (const key of ["deviceFeatureSelect", "driverFeatureSelect"]) if (!isDword(common[key])) return `transport.common.${key} is not a dword`;
  if (!isDwords(common.driverFeatures, 2)) return "transport.common.driverFeatures is not 2 dwords";
  const driver = (BigInt(common.driverFeatures[1]!) << 32n) | BigInt(common.driverFeatures[0]!);
  if (status & DeviceStatus.FEATURES_OK && (driver & ~shape.deviceFeatures) !== 0n) return `transport.common.driverFeatures accepts features this device does not offer (0x${(driver & ~shape.deviceFeatures).toString(16)})`;
  if (!isUint(common.queueSelect, 0xffff)) return "transport.common.queueSelect is not a 16-bit number";
  const queues = common.queues;
  if (!Array.isArray(queues) || queues.length !== shape.queueCount) return `transport.common.queues is not ${shape.queueCount} queue(s)`;
  for (let i = 0; i < queues.length; i++) {
    const why = checkQueue(queues[i], i, shape.queueMaxSize);
    if (why) return why;
  }
  if (!isUint(transport.isr, IsrStatus.QUEUE | IsrStatus.DEVICE_CONFIGURATION) || (transport.isr & ~(IsrStatus.QUEUE | IsrStatus.DEVICE_CONFIGURATION)) !== 0) return "transport.isr is not an ISR status";
  if (typeof transport.intxAsserted !== "boolean") return "transport.intxAsserted is not a boolean";
  const stats = transport.stats;
  if (!isObject(stats)) return "transport.stats is missing";
  for (const key of TRANSPORT_COUNTERS) if (!isCount(stats[key])) return `transport.stats.${key} is not a count`;
  if (stats.lastError !== null && typeof stats.lastError !== "string") return "transport.stats.lastError is neither null nor text";
  return undefined;
}

/** Why `state` cannot go into a device of this shape (the first wrong field), or undefined. */
export function checkVirtioBlkState(state: unknown, shape: VirtioBlkShape): string | undefined {
  if (!isObject(state)) return "the state is not an object";
  const transport = checkTransport(state.transport, shape);
  if (transport) return transport;
  const counters = state.counters;
  if (!isObject(counters)) return "counters is missing";
  for (const key of BLK_COUNTERS) if (!isCount(counters[key])) return `counters.${key} is not a count`;
  const config = state.config;
  if (!Array.isArray(config) || config.length !== shape.config.length || config.some((b, i) => b !== shape.config[i])) {
    return "config differs from this device's configuration (another disk size, queue size or options)";
  }
  return checkDisk(state.disk, shape.diskBytes);
}
