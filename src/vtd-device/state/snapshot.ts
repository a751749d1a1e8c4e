/**
 * The unit's snapshot format (`VtdDevice.saveState` / `restoreState`): one plain,
 * JSON-serialisable object holding everything guest-visible and cached.
 *
 *   format         "v86-vtd-unit"
 *   version        1 (a snapshot of another version is refused)
 *   configuration  the options that shape the unit's state and registers (a snapshot taken with
 *                  other values is refused, naming the first that differs)
 *   registers      the register file's bytes as hardware holds them (hex), fault records included
 *   translation    what SRTP and TE latched: root table, TES, the table mode's validity
 *   contextCache, iotlb, deviceTlbs, interruptEntryCache
 *                  every slot of each cache, negative (CM = 1) entries and round-robin victims
 *                  included, so a restored unit is as stale as the saved one
 *   interruptRemapping  IRES, CFIS, the IRTA latched by SIRTP, the last request's outcome
 *   faults         the next fault recording register to write
 *   queue          the unit's clock, latched IQA, head, pending disable, stepped-fetch time, budget
 *                  pause, and the device-TLB invalidations outstanding at endpoints
 *   stats          the DeviceStats counters
 *   checksum       CRC-32 of JSON.stringify of the snapshot without this field (keys in saved order)
 *
 * Numbers stay numbers (every value is an exact double; none needs a bigint). Not in a snapshot:
 * the host's side, which a restoring host sets up itself: notifier registrations (host callbacks;
 * after a restore every address space with MAP or UNMAP notifiers gets a full resync: UNMAP of
 * everything, then MAP of what the guest's tables map now), their NotifierStats, trace listeners,
 * `onInterrupt`, the strict checker's reports (reset), and guest memory (the platform's).
 */
import type { ResolvedOptions } from "../options.ts";
import type { ContextCacheState } from "../caches/context-cache.ts";
import type { IotlbState } from "../caches/iotlb.ts";
import type { DeviceTlbsState } from "../caches/device-tlb.ts";
import type { InterruptEntryCacheState } from "../caches/interrupt-entry-cache.ts";
import type { InterruptRemappingState } from "../interrupts/interrupt-remapping.ts";
import type { InvalidationQueueState } from "../invalidation/invalidation-queue.ts";
import type { TranslatorState } from "../translation/translator.ts";
import { describe, isRecord, SnapshotError } from "./codec.ts";
import type { CountersState } from "./counters-state.ts";

export const SNAPSHOT_FORMAT = "v86-vtd-unit";
export const SNAPSHOT_VERSION = 2;

/** The options a snapshot's state depends on: registers (CAP/ECAP), cache shapes, bounds. */
export interface SnapshotConfiguration {
  awBits: number;
  cachingMode: boolean;
  negativeCaching: boolean;
  coherent: boolean;
  passThrough: boolean;
  rwbf: boolean;
  dmaDrain: boolean;
  faultRecords: number;
  deviceIotlb: boolean;
  interruptRemapping: boolean;
  iotlbEntries: number;
  contextCacheEntries: number;
  interruptEntryCacheEntries: number;
  deviceIotlbEntries: number;
  deviceIotlbEntriesPerEndpoint: number;
  deviceIotlbPendingInvalidations: number;
  /** Scalable mode (CAP/ECAP and what SRTP may latch): present only for a unit with `scalableMode`, so a legacy unit's snapshot is as before. */
  scalableMode?: boolean;
  firstStage?: boolean;
  secondStage?: boolean;
  pasidBits?: number;
}

export interface VtdSnapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: typeof SNAPSHOT_VERSION;
  configuration: SnapshotConfiguration;
  registers: { bytes: string };
  translation: TranslatorState;
  contextCache: ContextCacheState;
  iotlb: IotlbState;
  deviceTlbs: { slots: DeviceTlbsState };
  interruptEntryCache: InterruptEntryCacheState;
  interruptRemapping: InterruptRemappingState;
  faults: { next: number };
  queue: InvalidationQueueState;
  stats: Record<string, unknown>;
  counters: CountersState;
  checksum: number;
}

export function configurationOf(o: ResolvedOptions, interruptEntryCacheEntries: number): SnapshotConfiguration {
  return {
    awBits: o.awBits,
    cachingMode: o.cachingMode,
    negativeCaching: o.negativeCaching,
    coherent: o.coherent,
    passThrough: o.passThrough,
    rwbf: o.rwbf,
    dmaDrain: o.dmaDrain,
    faultRecords: o.faultRecords,
    deviceIotlb: o.deviceIotlb,
    interruptRemapping: o.interruptRemapping,
    iotlbEntries: o.iotlbEntries,
    contextCacheEntries: o.contextCacheEntries,
    interruptEntryCacheEntries,
    deviceIotlbEntries: o.deviceIotlbEntries,
    deviceIotlbEntriesPerEndpoint: o.deviceIotlbEntriesPerEndpoint,
    deviceIotlbPendingInvalidations: o.deviceIotlbPendingInvalidations,
    ...(o.scalableMode ? { scalableMode: true, firstStage: o.firstStage, secondStage: o.secondStage, pasidBits: o.pasidBits } : {}),
  };
}

/**
 * The snapshot as an object: parsed when given as JSON text, then format, version and
 * configuration checked against this unit's, in that order. Throws SnapshotError.
 */
export function checkHeader(input: unknown, own: SnapshotConfiguration): Record<string, unknown> {
  let snapshot = input;
  if (typeof input === "string") {
    try {
      snapshot = JSON.parse(input);
    } catch (error) {
      throw new SnapshotError(`snapshot is not valid JSON (truncated or damaged?): ${(error as Error).message}`);
    }
  }
  if (!isRecord(snapshot)) throw new SnapshotError(`snapshot: expected an object or its JSON text, got ${describe(snapshot)}`);
  if (snapshot.format !== SNAPSHOT_FORMAT) throw new SnapshotError(`snapshot format ${describe(snapshot.format)} is not "${SNAPSHOT_FORMAT}"`);
  if (snapshot.version !== SNAPSHOT_VERSION) throw new SnapshotError(`snapshot version ${describe(snapshot.version)} is not ${SNAPSHOT_VERSION}`);
  const configuration = snapshot.configuration;
  if (!isRecord(configuration)) throw new SnapshotError(`snapshot configuration: missing or not an object (got ${describe(configuration)})`);
  for (const [key, value] of Object.entries(own)) {
    if (configuration[key] !== value) {
      throw new SnapshotError(`snapshot configuration differs: ${key} ${describe(configuration[key])} (snapshot) vs ${describe(value)} (this unit)`);
    }
  }
  if (configuration.scalableMode === true && own.scalableMode !== true) {
    throw new SnapshotError("snapshot configuration differs: scalableMode true (snapshot) vs false (this unit)");
  }
  return snapshot;
}
