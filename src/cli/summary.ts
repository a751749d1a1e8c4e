/**
 * What `npm start` prints after the guest: the unit's identification and status registers,
 * the invalidations it saw by cache, granularity and interface, and the faults, from trace events.
 */
import { FAULT_CODES, FaultReason, Fsts, Gsts, Reg } from "../spec/index.ts";
import type { TraceEvent, VtdDevice } from "../vtd-device/index.ts";

export class TraceCounts {
  readonly invalidations = new Map<string, number>();
  readonly faults = new Map<FaultReason, { recorded: number; notRecorded: number }>();

  readonly listener = (event: TraceEvent): void => {
    if (event.type === "vtd_inv") {
      const granularity = event.cache === "device-iotlb" ? "" : ` ${event.granularity}`;
      const key = `${event.cache}${granularity} (${event.source})`;
      this.invalidations.set(key, (this.invalidations.get(key) ?? 0) + 1);
    } else if (event.type === "vtd_fault") {
      const entry = this.faults.get(event.reason) ?? { recorded: 0, notRecorded: 0 };
      if (event.recorded) entry.recorded++;
      else entry.notRecorded++;
      this.faults.set(event.reason, entry);
    }
  };
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
  counts: TraceCounts;
  exitCode: number | null;
  timedOut: boolean;
  elapsedMs: number;
  instructions?: number | undefined;
}

export function formatSummary({ device, counts, exitCode, timedOut, elapsedMs, instructions }: SummaryInput): string {
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
  const invalidations = [...counts.invalidations].sort(([a], [b]) => a.localeCompare(b));
  if (invalidations.length === 0) lines.push("  none");
  for (const [kind, n] of invalidations) lines.push(`  ${kind}: ${n}`);
  lines.push("faults:");
  if (counts.faults.size === 0) lines.push("  none");
  for (const [reason, { recorded, notRecorded }] of [...counts.faults].sort(([a], [b]) => a - b)) {
    lines.push(`  0x${reason.toString(16)} ${FaultReason[reason]} (${FAULT_CODES[reason]}): ${recorded} recorded${notRecorded ? `, ${notRecorded} not recorded` : ""}`);
  }
  const outcome = timedOut ? "timed out" : exitCode === null ? "halted without exiting" : `exit ${exitCode}`;
  lines.push(`guest: ${outcome} after ${(elapsedMs / 1000).toFixed(2)} s${instructions === undefined ? "" : `, ${instructions} instructions`}`);
  return lines.join("\n");
}
