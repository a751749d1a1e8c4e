/**
 * The unit's breakdown counters (`unit.counters`: invalidations by kind, misses and faults by
 * requester id, faults by reason) inside the machine's saved state. The unit's own snapshot keeps
 * its DeviceStats totals but not this breakdown, so without it a restored machine's per-kind and
 * per-device counts would start from zero while the totals go on.
 */
import { INVALIDATION_KINDS, type UnitCounters } from "../vtd-device/stats.ts";
import { isCount, isCounts } from "../devices/state-checks.ts";

export interface UnitCountersState {
  invalidations: { register: number[]; queue: number[] };
  iotlbMissesBySid: [number, number][];
  contextMissesBySid: [number, number][];
  faultsBySid: [number, number][];
  faultsRecordedByReason: number[];
  faultsNotRecordedByReason: number[];
}

const MAPS = ["iotlbMissesBySid", "contextMissesBySid", "faultsBySid"] as const;
const REASONS = ["faultsRecordedByReason", "faultsNotRecordedByReason"] as const;

export function saveUnitCounters(counters: UnitCounters): UnitCountersState {
  return {
    invalidations: { register: Array.from(counters.invalidations.register), queue: Array.from(counters.invalidations.queue) },
    iotlbMissesBySid: Array.from(counters.iotlbMissesBySid),
    contextMissesBySid: Array.from(counters.contextMissesBySid),
    faultsBySid: Array.from(counters.faultsBySid),
    faultsRecordedByReason: Array.from(counters.faultsRecordedByReason),
    faultsNotRecordedByReason: Array.from(counters.faultsNotRecordedByReason),
  };
}

/** Why `state` is not a counters state (the first wrong field), or undefined. */
export function checkUnitCounters(state: unknown): string | undefined {
  if (typeof state !== "object" || state === null) return "the unit's counters are missing";
  const s = state as Record<string, unknown>;
  const invalidations = s.invalidations as Record<string, unknown> | null;
  if (typeof invalidations !== "object" || invalidations === null || !isCounts(invalidations.register, INVALIDATION_KINDS.length) || !isCounts(invalidations.queue, INVALIDATION_KINDS.length)) {
    return `the unit's counters.invalidations are not two lists of ${INVALIDATION_KINDS.length} counts`;
  }
  for (const key of MAPS) {
    const entries = s[key];
    if (!Array.isArray(entries) || !entries.every((e) => Array.isArray(e) && e.length === 2 && Number.isInteger(e[0]) && e[0] >= 0 && e[0] <= 0xffff && isCount(e[1]))) {
      return `the unit's counters.${key} is not a list of (requester id, count)`;
    }
  }
  for (const key of REASONS) if (!isCounts(s[key], 256)) return `the unit's counters.${key} is not 256 counts`;
  return undefined;
}

/** Takes a checked state. */
export function restoreUnitCounters(counters: UnitCounters, state: UnitCountersState): void {
  counters.invalidations.register.set(state.invalidations.register);
  counters.invalidations.queue.set(state.invalidations.queue);
  for (const key of MAPS) {
    counters[key].clear();
    for (const [sid, count] of state[key]) counters[key].set(sid, count);
  }
  for (const key of REASONS) counters[key].set(state[key]);
}
