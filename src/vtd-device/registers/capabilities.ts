/** CAP and ECAP as a configuration reports them (VT-d §11.4.2, §11.4.3). */
import { Cap, Ecap, FRO, IRO, MAMV, ND, SAGAW_39_BIT, SAGAW_48_BIT, SLLPS_1G, SLLPS_2M } from "../../spec/registers.ts";
import { setField } from "../../spec/field.ts";
import { MHMV } from "../../spec/interrupts.ts";
import type { ResolvedOptions } from "../options.ts";
import { PagingEntryMasks } from "../translation/paging-entry.ts";
import { scalableCapabilityBits, scalableExtendedCapabilityBits } from "../scalable/scalable-capabilities.ts";

export function capabilityValue(o: ResolvedOptions): bigint {
  let cap = 0n;
  cap = setField(cap, Cap.ND, ND);
  cap = setField(cap, Cap.RWBF, o.rwbf ? 1 : 0);
  cap = setField(cap, Cap.CM, o.cachingMode ? 1 : 0);
  cap = setField(cap, Cap.SAGAW, o.awBits === 48 ? SAGAW_39_BIT | SAGAW_48_BIT : SAGAW_39_BIT);
  cap = setField(cap, Cap.MGAW, o.awBits - 1);
  cap = setField(cap, Cap.FRO, FRO);
  cap = setField(cap, Cap.SLLPS, SLLPS_2M | SLLPS_1G);
  cap = setField(cap, Cap.PSI, 1);
  cap = setField(cap, Cap.NFR, o.faultRecords - 1);
  cap = setField(cap, Cap.MAMV, MAMV);
  cap = setField(cap, Cap.DWD, o.dmaDrain ? 1 : 0);
  cap = setField(cap, Cap.DRD, o.dmaDrain ? 1 : 0);
  cap = setField(cap, Cap.ESRTPS, o.esrtps ? 1 : 0);
  return cap | scalableCapabilityBits(o);
}

export function extendedCapabilityValue(o: ResolvedOptions): bigint {
  let ecap = 0n;
  ecap = setField(ecap, Ecap.C, o.coherent ? 1 : 0);
  ecap = setField(ecap, Ecap.QI, 1);
  ecap = setField(ecap, Ecap.DT, o.deviceIotlb ? 1 : 0);
  // Interrupt remapping (needs QI, offered above); EIM stays 0: no x2APIC on the platform.
  ecap = setField(ecap, Ecap.IR, o.interruptRemapping ? 1 : 0);
  ecap = setField(ecap, Ecap.MHMV, o.interruptRemapping ? MHMV : 0);
  ecap = setField(ecap, Ecap.PT, o.passThrough ? 1 : 0);
  ecap = setField(ecap, Ecap.IRO, IRO);
  return ecap | scalableExtendedCapabilityBits(o);
}

/** The translation facts the walk needs, as plain numbers (read once, used on every walk). */
export interface WalkConfig {
  /** Host/guest address width in bits (MGAW + 1 = HAW here). */
  readonly awBits: number;
  /** SAGAW bit mask. */
  readonly sagaw: number;
  /** SLLPS bits: 1 = 2 MiB, 2 = 1 GiB. */
  readonly sllps: number;
  readonly passThrough: boolean;
  readonly deviceIotlb: boolean;
  /** The paging-entry validity rules for this width and SLLPS. */
  readonly entryMasks: PagingEntryMasks;
}

export function walkConfig(o: ResolvedOptions): WalkConfig {
  const sllps = SLLPS_2M | SLLPS_1G;
  return {
    awBits: o.awBits,
    sagaw: o.awBits === 48 ? SAGAW_39_BIT | SAGAW_48_BIT : SAGAW_39_BIT,
    sllps,
    passThrough: o.passThrough,
    deviceIotlb: o.deviceIotlb,
    entryMasks: new PagingEntryMasks(o.awBits, sllps),
  };
}
