/**
 * The unit's configuration. Option names follow QEMU's intel-iommu properties where one exists.
 * Every option is checked once here: a bad value is a clear error naming it.
 */
import { MAX_FAULT_RECORDS } from "../spec/registers.ts";
import type { GuestMemory } from "./memory/guest-memory.ts";
import { resolveCheckerOptions, type CheckerOptions, type ResolvedCheckerOptions } from "./checker/checker-options.ts";
import { DEFAULT_DEVICE_TLB_ENTRIES, DEFAULT_DEVICE_TLB_ENTRIES_PER_ENDPOINT } from "./caches/device-tlb.ts";
import { resolveScalableOptions, type ResolvedScalableOptions, type ScalableModeOptions } from "./scalable/scalable-options.ts";

export interface VtdOptions extends ScalableModeOptions {
  /** Guest-physical memory the unit reads tables from and DMA goes to. */
  memory: GuestMemory;
  /** CAP.CM: not-present and faulting translations may be cached (QEMU `caching-mode`). Default false. */
  cachingMode?: boolean;
  /** Guest address width: 39 (3-level) or 48 (4-level, also offers 39). Default 48 (QEMU ≥ 9.2). */
  awBits?: 39 | 48;
  /** ECAP.C: table reads snoop CPU caches. Default false, as QEMU. */
  coherent?: boolean;
  /**
   * The platform reports the guest's cache-line flushes (`VtdDevice.cacheLineFlushed`). With it and
   * ECAP.C = 0 the unit does not see a table store until the guest flushes its line, as hardware
   * that does not snoop CPU caches (memory/cpu-caches.ts); without it the unit reads memory as the
   * CPU wrote it. Default false; the v86 attachment turns it on.
   */
  cacheLineFlushes?: boolean;
  /** ECAP.PT: pass-through context entries (QEMU `pt`). Default true. */
  passThrough?: boolean;
  /**
   * CAP.RWBF: software must flush write buffers. With it the unit has a write buffer
   * (memory/write-buffer.ts): table stores to lines it has read stay invisible to it until
   * GCMD.WBF, an invalidation, SRTP or TE, or `writeBufferDrainMs`. Default false, as QEMU.
   */
  rwbf?: boolean;
  /** The longest a buffered table line stays invisible to the unit (unit time, ms), 0..60000. Default 1000. */
  writeBufferDrainMs?: number;
  /**
   * CAP.ESRTPS: SRTP invalidates every DMA-remapping cache (context cache, IOTLB). Off (QEMU 10.0
   * reports 0): SRTP only latches the root table, and what the caches hold survives until software
   * invalidates it (VT-d §11.4.2, §11.4.4). Default false.
   */
  esrtps?: boolean;
  /** Number of fault recording registers, NFR + 1, 1..256. Default 1, as QEMU. */
  faultRecords?: number;
  /** CAP.DRD/DWD (QEMU `dma-drain`). Default true. */
  dmaDrain?: boolean;
  /** ECAP.DT: device-TLB (ATS); makes context TT = 1 valid (QEMU `device-iotlb`). Default false. */
  deviceIotlb?: boolean;
  /**
   * ECAP.IR: interrupt remapping (QEMU `intremap`): IRTA, GCMD.SIRTP/IRE/CFI, remappable-format
   * interrupts through IRTEs (`interruptRequest`), the interrupt entry cache. Default true, as
   * QEMU 10.0's q35 (split irqchip); ECAP.EIM stays 0 (v86 has no x2APIC).
   */
  interruptRemapping?: boolean;
  /** Cache not-present and faulting results. Only ever done with CM = 1; default true when cachingMode. */
  negativeCaching?: boolean;
  /** IOTLB capacity in entries (power of two, 4-way sets). Default 4096. */
  iotlbEntries?: number;
  /** Context-cache capacity in entries (power of two, direct-mapped by source-id). Default 256. */
  contextCacheEntries?: number;
  /** Receives every MSI the unit sends: the fault event and the invalidation completion event. */
  onInterrupt?: (address: bigint, data: number) => void;
  /**
   * Device time each queued descriptor takes, in ms. 0 (default): a tail write processes the whole
   * queue at once. Above 0 the queue advances only with `advanceTime`, so IQH can be watched moving.
   */
  queueDescriptorTimeMs?: number;
  /**
   * Host work one tail write (or one step of the unit's clock) may spend on the queue, in units:
   * a descriptor 1, an IOTLB slot or paging entry visited 1, a notifier event 16. Past it the
   * queue pauses before the next descriptor and goes on as the clock moves (`advanceTime`) or at
   * the next tail write, as hardware takes time over a long queue. Default 2^22.
   */
  queueWorkBudget?: number;
  /** Device time a device-TLB invalidation takes to complete at the endpoint, 0..60000 ms. Default 0. */
  deviceIotlbLatencyMs?: number;
  /** An endpoint that has not answered a device-TLB invalidation after this long raises ITE. Default 60000 (ATS). */
  deviceIotlbTimeoutMs?: number;
  /** Device-TLB entries (4 KiB pages) of all endpoints together: power of two, 4..2^20. Default 4096. */
  deviceIotlbEntries?: number;
  /** Device-TLB entries one endpoint holds at most (its oldest goes first), 1..deviceIotlbEntries. Default 256. */
  deviceIotlbEntriesPerEndpoint?: number;
  /** Device-TLB invalidations outstanding at once, 1..32768; when full the queue waits for an answer. Default 256. */
  deviceIotlbPendingInvalidations?: number;
  /**
   * The strict checker of guest drivers (checker.ts): reports stale cache entries, missing CM = 1
   * invalidations and (given `cpuView`, ECAP.C = 0) unflushed table writes. Default off, at no cost.
   */
  checker?: boolean | CheckerOptions;
  /**
   * UNSAFE, for demonstrations: lets MAP notifiers register while CAP.CM = 0. The guest then
   * need not invalidate new mappings, so a shadow fed by notifiers misses them. Default false.
   */
  allowMapNotifiersWithoutCachingMode?: boolean;
  /**
   * Guest paging-structure tables the notifier record of one address space may hold (one
   * RecordNode, 4-8 KiB of host memory, per table mirrored), which also bounds the tables one
   * sync visits. Past it the address space stops being mirrored: everything is unmapped and
   * `notifiers.onWalkLimit` is told, as VFIO stops at its DMA-entry limit. Default 4096 (2 M
   * entries read at most per sync, 8 GiB of 4 KiB pages, at most 34 MiB of record); 1..2^20.
   */
  notifierTableLimit?: number;
  /**
   * MAP and UNMAP events one notifier sync of one address space may report (a guest action: one
   * invalidation descriptor or register command). Past it the space is unmapped whole and
   * `notifiers.onWalkLimit` told. Default 2^20 (a replay of 4 GiB of 4 KiB pages, or 2 GiB of
   * them changed at once); 1..2^24.
   */
  notifierEventBudget?: number;
}

export interface ResolvedOptions extends ResolvedScalableOptions {
  memory: GuestMemory;
  cachingMode: boolean;
  awBits: 39 | 48;
  coherent: boolean;
  cacheLineFlushes: boolean;
  passThrough: boolean;
  rwbf: boolean;
  writeBufferDrainMs: number;
  esrtps: boolean;
  faultRecords: number;
  dmaDrain: boolean;
  deviceIotlb: boolean;
  interruptRemapping: boolean;
  negativeCaching: boolean;
  iotlbEntries: number;
  contextCacheEntries: number;
  onInterrupt: (address: bigint, data: number) => void;
  queueDescriptorTimeMs: number;
  queueWorkBudget: number;
  deviceIotlbLatencyMs: number;
  deviceIotlbTimeoutMs: number;
  deviceIotlbEntries: number;
  deviceIotlbEntriesPerEndpoint: number;
  deviceIotlbPendingInvalidations: number;
  /** undefined: the checker is off. */
  checker: ResolvedCheckerOptions | undefined;
  allowMapNotifiersWithoutCachingMode: boolean;
  notifierTableLimit: number;
  notifierEventBudget: number;
}

/** The ATS completion time-out: a device-TLB invalidation may legally take up to a minute. */
export const ATS_TIMEOUT_MS = 60_000;

function milliseconds(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > max) {
    throw new RangeError(`VtdDevice option ${name}: expected milliseconds in 0..${max}, got ${String(value)}`);
  }
  return value;
}

function count(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`VtdDevice option ${name}: expected an integer ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`VtdDevice option ${name}: expected true or false, got ${String(value)}`);
  return value;
}

function powerOfTwo(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max || (value & (value - 1)) !== 0) {
    throw new RangeError(`VtdDevice option ${name}: expected a power of two in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

export function resolveOptions(options: VtdOptions): ResolvedOptions {
  if (!options || typeof options !== "object") throw new TypeError("VtdDevice: options object with `memory` is required");
  const { memory } = options;
  if (!memory || typeof memory.read !== "function" || typeof memory.write !== "function" || typeof memory.size !== "number") {
    throw new TypeError("VtdDevice option memory: expected a GuestMemory (size, read, write)");
  }
  const awBits = options.awBits ?? 48;
  if (awBits !== 39 && awBits !== 48) throw new RangeError(`VtdDevice option awBits: expected 39 or 48, got ${String(awBits)}`);
  const faultRecords = options.faultRecords ?? 1;
  if (typeof faultRecords !== "number" || !Number.isInteger(faultRecords) || faultRecords < 1 || faultRecords > MAX_FAULT_RECORDS) {
    throw new RangeError(`VtdDevice option faultRecords: expected a whole number in 1..${MAX_FAULT_RECORDS}, got ${String(faultRecords)}`);
  }
  const onInterrupt = options.onInterrupt ?? (() => {});
  if (typeof onInterrupt !== "function") throw new TypeError("VtdDevice option onInterrupt: expected a function");
  const cachingMode = flag("cachingMode", options.cachingMode, false);
  const negativeCaching = flag("negativeCaching", options.negativeCaching, cachingMode);
  if (negativeCaching && !cachingMode) {
    throw new RangeError("VtdDevice option negativeCaching: only allowed with cachingMode (CAP.CM = 0 forbids caching not-present entries)");
  }
  return {
    memory,
    cachingMode,
    awBits,
    coherent: flag("coherent", options.coherent, false),
    cacheLineFlushes: flag("cacheLineFlushes", options.cacheLineFlushes, false),
    passThrough: flag("passThrough", options.passThrough, true),
    rwbf: flag("rwbf", options.rwbf, false),
    writeBufferDrainMs: milliseconds("writeBufferDrainMs", options.writeBufferDrainMs, 1000, ATS_TIMEOUT_MS),
    esrtps: flag("esrtps", options.esrtps, false),
    faultRecords,
    dmaDrain: flag("dmaDrain", options.dmaDrain, true),
    deviceIotlb: flag("deviceIotlb", options.deviceIotlb, false),
    interruptRemapping: flag("interruptRemapping", options.interruptRemapping, true),
    negativeCaching,
    iotlbEntries: powerOfTwo("iotlbEntries", options.iotlbEntries, 4096, 4, 1 << 20),
    contextCacheEntries: powerOfTwo("contextCacheEntries", options.contextCacheEntries, 256, 1, 65536),
    onInterrupt,
    queueDescriptorTimeMs: milliseconds("queueDescriptorTimeMs", options.queueDescriptorTimeMs, 0, 1000),
    queueWorkBudget: count("queueWorkBudget", options.queueWorkBudget, 1 << 22, 1, 2 ** 30),
    deviceIotlbLatencyMs: milliseconds("deviceIotlbLatencyMs", options.deviceIotlbLatencyMs, 0, ATS_TIMEOUT_MS),
    deviceIotlbTimeoutMs: milliseconds("deviceIotlbTimeoutMs", options.deviceIotlbTimeoutMs, ATS_TIMEOUT_MS, 10 * ATS_TIMEOUT_MS),
    ...deviceTlbBounds(options),
    checker: resolveCheckerOptions(options.checker),
    allowMapNotifiersWithoutCachingMode: flag("allowMapNotifiersWithoutCachingMode", options.allowMapNotifiersWithoutCachingMode, false),
    notifierTableLimit: count("notifierTableLimit", options.notifierTableLimit, 4096, 1, 1 << 20),
    notifierEventBudget: count("notifierEventBudget", options.notifierEventBudget, 1 << 20, 1, 1 << 24),
    ...resolveScalableOptions(options, awBits),
  };
}

/** The device-TLB bounds (caches/device-tlb.ts, invalidation/pending-device-tlb.ts). */
function deviceTlbBounds(options: VtdOptions): Pick<ResolvedOptions, "deviceIotlbEntries" | "deviceIotlbEntriesPerEndpoint" | "deviceIotlbPendingInvalidations"> {
  const deviceIotlbEntries = powerOfTwo("deviceIotlbEntries", options.deviceIotlbEntries, DEFAULT_DEVICE_TLB_ENTRIES, 4, 1 << 20);
  return {
    deviceIotlbEntries,
    deviceIotlbEntriesPerEndpoint: count("deviceIotlbEntriesPerEndpoint", options.deviceIotlbEntriesPerEndpoint,
      Math.min(DEFAULT_DEVICE_TLB_ENTRIES_PER_ENDPOINT, deviceIotlbEntries), 1, deviceIotlbEntries),
    deviceIotlbPendingInvalidations: count("deviceIotlbPendingInvalidations", options.deviceIotlbPendingInvalidations, 256, 1, 32768),
  };
}
