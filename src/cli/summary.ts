/**
 * What `npm start` prints after the guest: the unit's identification and status registers,
 * the invalidations it saw by cache, granularity and interface, and the faults, from the unit's
 * counters (no trace listener: a run without --trace builds no event).
 */
import { FAULT_CODES, FaultReason, Fsts, Gsts, Reg } from "../spec/index.ts";
import { INVALIDATION_KINDS, PASID_INVALIDATION_KINDS, type UnitCounters } from "../vtd-device/stats.ts";
import type { VtdDevice } from "../vtd-device/index.ts";

/** Invalidations so far by kind and interface, keyed as the summaries print them ("iotlb page (queue)"); kinds never seen are left out. */
export function invalidationCounts(counters: UnitCounters): Map<string, number> {
  const out = new Map<string, number>();
  for (const source of ["register", "queue"] as const) {
    const counts = counters.invalidations[source];
    INVALIDATION_KINDS.forEach((kind, i) => {
      if (counts[i]! > 0) out.set(`${kind} (${source})`, counts[i]!);
    });
  }
  // Scalable mode's descriptors come through the queue only.
  PASID_INVALIDATION_KINDS.forEach((kind, i) => {
    const n = counters.pasidInvalidations[i]!;
    if (n > 0) out.set(`${kind} (queue)`, n);
  });
  return out;
}

/** Faults so far by reason: recorded, and not recorded (FPD, PFO, same-source compression); reasons never seen are left out. */
export function faultCounts(counters: UnitCounters): Map<FaultReason, { recorded: number; notRecorded: number }> {
  const out = new Map<FaultReason, { recorded: number; notRecorded: number }>();
  for (let reason = 0; reason < 256; reason++) {
    const recorded = counters.faultsRecordedByReason[reason]!, notRecorded = counters.faultsNotRecordedByReason[reason]!;
    if (recorded + notRecorded > 0) out.set(reason, { recorded, notRecorded });
  }
  return out;
}

const hex = (value: bigint, digits: number) => `0x${value.toString(16).padStart(digits, "0")}`;

function flagNames(value: bigint, flags: Record<string, bigint>): string {
  const names = Object.entries(flags)
    .filter(([, bit]) => (value & bit) !== 0n)
    .map(([name]) => name);
  return names.length > 0 ? ` (${names.join(" ")})` : "";
}

export interface SummaryInput {
  device: VtdDevice;
  exitCode: number | null;
  timedOut: boolean;
  elapsedMs: number;
  instructions?: number | undefined;
}

export function formatSummary({ device, exitCode, timedOut, elapsedMs, instructions }: SummaryInput): string {
  const reg = (offset: number, size: 4 | 8) => device.readRegister(offset, size);
  const ver = reg(Reg.VER, 4);
  const gsts = reg(Reg.GSTS, 4);
  const fsts = reg(Reg.FSTS, 4);
  const fstsFlags = { PFO: Fsts.PFO, PPF: Fsts.PPF, IQE: Fsts.IQE, ICE: Fsts.ICE, ITE: Fsts.ITE };
  const lines = [
    "== VT-d unit ==",
    `VER   ${hex(ver, 8)} (${Number(ver >> 4n) & 0xf}.${Number(ver) & 0xf})`,
    `CAP   ${hex(reg(Reg.CAP, 8), 16)}`,
    `ECAP  ${hex(reg(Reg.ECAP, 8), 16)}`,
    `GSTS  ${hex(gsts, 8)}${flagNames(gsts, Gsts)}`,
    `FSTS  ${hex(fsts, 8)}${flagNames(fsts, fstsFlags)}`,
    "invalidations:",
  ];
  const invalidations = [...invalidationCounts(device.counters)].sort(([a], [b]) => a.localeCompare(b));
  if (invalidations.length === 0) lines.push("  none");
  for (const [kind, n] of invalidations) lines.push(`  ${kind}: ${n}`);
  lines.push("faults:");
  const faults = faultCounts(device.counters);
  if (faults.size === 0) lines.push("  none");
  for (const [reason, { recorded, notRecorded }] of [...faults].sort(([a], [b]) => a - b)) {
    lines.push(`  0x${reason.toString(16)} ${FaultReason[reason]} (${FAULT_CODES[reason]}): ${recorded} recorded${notRecorded ? `, ${notRecorded} not recorded` : ""}`);
  }
  const outcome = timedOut ? "timed out" : exitCode === null ? "halted without exiting" : `exit ${exitCode}`;
  lines.push(`guest: ${outcome} after ${(elapsedMs / 1000).toFixed(2)} s${instructions === undefined ? "" : `, ${instructions} instructions`}`);
  return lines.join("\n");
}
