/** What the unit counted: for tests, benchmarks and the main command's summary. */
export class DeviceStats {
  translations = 0;
  iotlbHits = 0;
  iotlbMisses = 0;
  contextHits = 0;
  contextMisses = 0;
  faultsRecorded = 0;
  faultsSuppressed = 0;
  faultsDropped = 0;
  contextInvalidations = { global: 0, domain: 0, device: 0 };
  iotlbInvalidations = { global: 0, domain: 0, page: 0 };
  deviceIotlbInvalidations = 0;
  interruptEntryCacheInvalidations = 0;
  /** Interrupt requests (`interruptRequest`): remapped through an IRTE, let through unchanged, blocked by a fault. */
  interruptsRemapped = 0;
  interruptsPassedThrough = 0;
  interruptsBlocked = 0;
  interruptEntryCacheHits = 0;
  interruptEntryCacheMisses = 0;
  invalidationWaits = 0;
  descriptorsProcessed = 0;
  /** Times the queue stopped at its work budget (queueWorkBudget) with descriptors left. */
  queueBudgetPauses = 0;
  writeBufferFlushes = 0;
  interruptsSent = 0;
  /** Interrupts whose `onInterrupt` handler threw (the unit went on). */
  interruptHandlerErrors = 0;
  registerReads = 0;
  registerWrites = 0;

  reset(): void {
    Object.assign(this, new DeviceStats());
  }
}

/** What an invalidation acted on, as the summaries name it: an index into `UnitCounters.invalidations`. */
export const INVALIDATION_KINDS = ["context global", "context domain", "context device", "iotlb global", "iotlb domain", "iotlb page", "device-iotlb"] as const;
export type InvalidationKind = (typeof INVALIDATION_KINDS)[number];
/** Scalable mode's invalidation descriptors (VT-d §6.5.2.2, §6.5.2.4): an index into `UnitCounters.pasidInvalidations`. */
export const PASID_INVALIDATION_KINDS = ["pasid-cache", "pasid-iotlb"] as const;

/**
 * The numbers the summaries need beyond DeviceStats, counted as numbers so that counting needs no
 * trace event: invalidations by kind and by the interface that asked, IOTLB and context-cache
 * misses and faults by requester id, faults by reason. Counts since the unit was made; a snapshot
 * holds them (state/counters-state.ts). Counting allocates nothing, except a requester's first entry in a
 * map (at most 65,536 requesters).
 */
export class UnitCounters {
  /** Invalidations the registers (`register`) and the queue (`queue`) asked for, by INVALIDATION_KINDS index. */
  readonly invalidations = { register: new Float64Array(INVALIDATION_KINDS.length), queue: new Float64Array(INVALIDATION_KINDS.length) };
  readonly iotlbMissesBySid = new Map<number, number>();
  readonly contextMissesBySid = new Map<number, number>();
  /** Every fault (recorded or not) by requester id. */
  readonly faultsBySid = new Map<number, number>();
  /** Faults by reason (index: the fault reason, 0..255): recorded, and not recorded (FPD, PFO, same-source compression). */
  readonly faultsRecordedByReason = new Float64Array(256);
  readonly faultsNotRecordedByReason = new Float64Array(256);
  /**
   * Scalable mode (index: the PASID-table entry's PGTT, 0..7): requests translated through a
   * PASID-table entry of that type, and walks that reached one (PASID-cache misses). Which stage a
   * driver chose shows here.
   */
  readonly translationsByPgtt = new Float64Array(8);
  readonly pasidEntryWalksByPgtt = new Float64Array(8);
  /** Scalable mode's invalidations from the queue, by PASID_INVALIDATION_KINDS index. */
  readonly pasidInvalidations = new Float64Array(PASID_INVALIDATION_KINDS.length);

  fault(sid: number, reason: number, recorded: boolean): void {
    bump(this.faultsBySid, sid);
    (recorded ? this.faultsRecordedByReason : this.faultsNotRecordedByReason)[reason & 0xff]!++;
  }
}

/** One more for `key`; allocation-free once the key is in the map. */
export function bump(map: Map<number, number>, key: number): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
