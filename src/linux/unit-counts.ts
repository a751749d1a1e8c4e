/**
 * What our unit counted while Linux ran, in a form that can be snapshotted at the guest's marks
 * (init reached, workload start/end) and subtracted: the device's stats, invalidations by kind
 * (from the trace, as `npm start` prints them), and IOTLB/context misses per requester id.
 */
import { TraceCounts } from "../cli/summary.ts";
import type { DeviceStats, TraceEvent, VtdDevice } from "../vtd-device/index.ts";

export interface UnitSnapshot {
  translations: number;
  iotlbHits: number;
  iotlbMisses: number;
  contextMisses: number;
  faultsRecorded: number;
  invalidationWaits: number;
  descriptorsProcessed: number;
  interruptsSent: number;
  /** "iotlb page (queue)" → count, etc. */
  invalidations: Map<string, number>;
  /** Requester id → IOTLB misses (page walks) for it. */
  iotlbMissesBySid: Map<number, number>;
  /** Requester id → context-cache misses (context walks) for it. */
  contextMissesBySid: Map<number, number>;
  faultsBySid: Map<number, number>;
}

export class UnitCounts {
  readonly trace = new TraceCounts();
  private readonly iotlbMissesBySid = new Map<number, number>();
  private readonly contextMissesBySid = new Map<number, number>();
  private readonly faultsBySid = new Map<number, number>();

  constructor(private readonly device: VtdDevice) {
    device.trace.subscribe((event: TraceEvent) => {
      this.trace.listener(event);
      if (event.type === "vtd_iotlb_miss") bump(this.iotlbMissesBySid, event.sid);
      else if (event.type === "vtd_context_miss") bump(this.contextMissesBySid, event.sid);
      else if (event.type === "vtd_fault") bump(this.faultsBySid, event.sid);
    });
  }

  snapshot(): UnitSnapshot {
    const s: DeviceStats = this.device.stats;
    return {
      translations: s.translations,
      iotlbHits: s.iotlbHits,
      iotlbMisses: s.iotlbMisses,
      contextMisses: s.contextMisses,
      faultsRecorded: s.faultsRecorded,
      invalidationWaits: s.invalidationWaits,
      descriptorsProcessed: s.descriptorsProcessed,
      interruptsSent: s.interruptsSent,
      invalidations: new Map(this.trace.invalidations),
      iotlbMissesBySid: new Map(this.iotlbMissesBySid),
      contextMissesBySid: new Map(this.contextMissesBySid),
      faultsBySid: new Map(this.faultsBySid),
    };
  }
}

function bump(map: Map<number, number>, key: number): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function subtractMaps<K>(later: Map<K, number>, earlier: Map<K, number>): Map<K, number> {
  const out = new Map<K, number>();
  for (const [key, value] of later) {
    const delta = value - (earlier.get(key) ?? 0);
    if (delta !== 0) out.set(key, delta);
  }
  return out;
}

/** What happened between two snapshots. */
export function difference(later: UnitSnapshot, earlier: UnitSnapshot): UnitSnapshot {
  return {
    translations: later.translations - earlier.translations,
    iotlbHits: later.iotlbHits - earlier.iotlbHits,
    iotlbMisses: later.iotlbMisses - earlier.iotlbMisses,
    contextMisses: later.contextMisses - earlier.contextMisses,
    faultsRecorded: later.faultsRecorded - earlier.faultsRecorded,
    invalidationWaits: later.invalidationWaits - earlier.invalidationWaits,
    descriptorsProcessed: later.descriptorsProcessed - earlier.descriptorsProcessed,
    interruptsSent: later.interruptsSent - earlier.interruptsSent,
    invalidations: subtractMaps(later.invalidations, earlier.invalidations),
    iotlbMissesBySid: subtractMaps(later.iotlbMissesBySid, earlier.iotlbMissesBySid),
    contextMissesBySid: subtractMaps(later.contextMissesBySid, earlier.contextMissesBySid),
    faultsBySid: subtractMaps(later.faultsBySid, earlier.faultsBySid),
  };
}

export function totalInvalidations(snapshot: UnitSnapshot): number {
  let n = 0;
  for (const value of snapshot.invalidations.values()) n += value;
  return n;
}
