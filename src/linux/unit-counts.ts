/**
 * What our unit counted while Linux ran, in a form that can be snapshotted at the guest's marks
 * (init reached, workload start/end) and subtracted: the device's stats, invalidations by kind
 * (as `npm start` prints them) and IOTLB/context misses and faults per requester id, all from the
 * unit's numeric counters (no trace listener, so a run without --trace builds no trace event).
 */
import { invalidationCounts } from "../cli/summary.ts";
import type { DeviceStats, VtdDevice } from "../vtd-device/index.ts";

export interface UnitSnapshot {
  translations: number;
  iotlbHits: number;
  iotlbMisses: number;
  contextMisses: number;
  faultsRecorded: number;
  invalidationWaits: number;
  descriptorsProcessed: number;
  interruptsSent: number;
  /** "iotlb page (queue)" → count, etc.; scalable mode's "pasid-cache (queue)" and "pasid-iotlb (queue)" too. */
  invalidations: Map<string, number>;
  /** Scalable mode: requests translated through a PASID-table entry, by its PGTT (index 1 first stage, 2 second stage, 4 pass-through). */
  translationsByPgtt: number[];
  /** Requester id → IOTLB misses (page walks) for it. */
  iotlbMissesBySid: Map<number, number>;
  /** Requester id → context-cache misses (context walks) for it. */
  contextMissesBySid: Map<number, number>;
  faultsBySid: Map<number, number>;
}

export class UnitCounts {
  constructor(private readonly device: VtdDevice) {}

  snapshot(): UnitSnapshot {
    const s: DeviceStats = this.device.stats;
    const c = this.device.counters;
    return {
      translations: s.translations,
      iotlbHits: s.iotlbHits,
      iotlbMisses: s.iotlbMisses,
      contextMisses: s.contextMisses,
      faultsRecorded: s.faultsRecorded,
      invalidationWaits: s.invalidationWaits,
      descriptorsProcessed: s.descriptorsProcessed,
      interruptsSent: s.interruptsSent,
      invalidations: invalidationCounts(c),
      translationsByPgtt: Array.from(c.translationsByPgtt),
      iotlbMissesBySid: new Map(c.iotlbMissesBySid),
      contextMissesBySid: new Map(c.contextMissesBySid),
      faultsBySid: new Map(c.faultsBySid),
    };
  }
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
    translationsByPgtt: later.translationsByPgtt.map((n, i) => n - (earlier.translationsByPgtt[i] ?? 0)),
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
