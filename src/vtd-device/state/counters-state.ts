/**
 * The unit's breakdown counters (`unit.counters`, stats.ts: invalidations by kind and interface,
 * misses and faults by requester id, faults by reason) as a snapshot section, so a restored unit's
 * per-kind and per-device counts go on from the saved ones, as its DeviceStats totals do.
 */
import { INVALIDATION_KINDS, PASID_INVALIDATION_KINDS, type UnitCounters } from "../stats.ts";
import type { Section } from "./codec.ts";

export interface CountersState {
  invalidations: { register: number[]; queue: number[] };
  iotlbMissesBySid: [number, number][];
  contextMissesBySid: [number, number][];
  faultsBySid: [number, number][];
  faultsRecordedByReason: number[];
  faultsNotRecordedByReason: number[];
  /** Scalable mode's counts; absent while all are 0 (a legacy unit's section is as before). */
  scalable?: { translationsByPgtt: number[]; pasidEntryWalksByPgtt: number[]; pasidInvalidations: number[] };
}

const BY_PGTT = ["translationsByPgtt", "pasidEntryWalksByPgtt"] as const;
const PGTTS = 8;

const BY_SID = ["iotlbMissesBySid", "contextMissesBySid", "faultsBySid"] as const;
const BY_REASON = ["faultsRecordedByReason", "faultsNotRecordedByReason"] as const;
const REASONS = 256;

export function saveCounters(c: UnitCounters): CountersState {
  return {
    invalidations: { register: Array.from(c.invalidations.register), queue: Array.from(c.invalidations.queue) },
    iotlbMissesBySid: Array.from(c.iotlbMissesBySid),
    contextMissesBySid: Array.from(c.contextMissesBySid),
    faultsBySid: Array.from(c.faultsBySid),
    faultsRecordedByReason: Array.from(c.faultsRecordedByReason),
    faultsNotRecordedByReason: Array.from(c.faultsNotRecordedByReason),
    ...(c.translationsByPgtt.some((n) => n > 0) || c.pasidEntryWalksByPgtt.some((n) => n > 0) || c.pasidInvalidations.some((n) => n > 0)
      ? { scalable: { translationsByPgtt: Array.from(c.translationsByPgtt), pasidEntryWalksByPgtt: Array.from(c.pasidEntryWalksByPgtt), pasidInvalidations: Array.from(c.pasidInvalidations) } }
      : {}),
  };
}

/** Checks the section in full (SnapshotError naming the field); touches nothing. */
export function decodeCounters(s: Section): CountersState {
  const invalidations = s.section("invalidations");
  const bySid = (key: (typeof BY_SID)[number]): [number, number][] =>
    s.array(key).map((entry, i) => {
      if (!Array.isArray(entry) || entry.length !== 2) s.fail(`${key}[${i}]: expected a (requester id, count) pair`);
      const [sid, n] = entry as unknown[];
      if (!Number.isInteger(sid) || (sid as number) < 0 || (sid as number) > 0xffff) s.fail(`${key}[${i}]: requester id ${String(sid)} is not 0..0xFFFF`);
      if (!Number.isSafeInteger(n) || (n as number) < 0) s.fail(`${key}[${i}]: count ${String(n)} is not a whole number ≥ 0`);
      return [sid as number, n as number];
    });
  return {
    invalidations: {
      register: counts(invalidations, "register", INVALIDATION_KINDS.length),
      queue: counts(invalidations, "queue", INVALIDATION_KINDS.length),
    },
    iotlbMissesBySid: bySid("iotlbMissesBySid"),
    contextMissesBySid: bySid("contextMissesBySid"),
    faultsBySid: bySid("faultsBySid"),
    faultsRecordedByReason: counts(s, "faultsRecordedByReason", REASONS),
    faultsNotRecordedByReason: counts(s, "faultsNotRecordedByReason", REASONS),
    ...(s.raw("scalable") === undefined ? {} : { scalable: decodeScalable(s.section("scalable")) }),
  };
}

function decodeScalable(s: Section): NonNullable<CountersState["scalable"]> {
  return {
    translationsByPgtt: counts(s, "translationsByPgtt", PGTTS),
    pasidEntryWalksByPgtt: counts(s, "pasidEntryWalksByPgtt", PGTTS),
    pasidInvalidations: counts(s, "pasidInvalidations", PASID_INVALIDATION_KINDS.length),
  };
}

/** `length` whole numbers ≥ 0. */
function counts(s: Section, key: string, length: number): number[] {
  return s.array(key, length).map((n, i) => {
    if (!Number.isSafeInteger(n) || (n as number) < 0) s.fail(`${key}[${i}]: ${String(n)} is not a whole number ≥ 0`);
    return n as number;
  });
}

export function loadCounters(c: UnitCounters, state: CountersState): void {
  c.invalidations.register.set(state.invalidations.register);
  c.invalidations.queue.set(state.invalidations.queue);
  for (const key of BY_SID) {
    c[key].clear();
    for (const [sid, n] of state[key]) c[key].set(sid, n);
  }
  for (const key of BY_REASON) c[key].set(state[key]);
  for (const key of BY_PGTT) c[key].set(state.scalable?.[key] ?? new Array<number>(PGTTS).fill(0));
  c.pasidInvalidations.set(state.scalable?.pasidInvalidations ?? new Array<number>(PASID_INVALIDATION_KINDS.length).fill(0));
}
