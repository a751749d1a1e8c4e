/**
 * The CAP and ECAP bits scalable mode adds (VT-d §11.4.2, §11.4.3), equal to QEMU 10.0's for the
 * same properties: `x-scalable-mode=on` gives SMTS, SSTS and SRS; `x-flts=on` gives SMTS, FSTS and
 * CAP.FS1GP (and neither SSTS nor SRS); `x-pasid-mode=on` adds PASID with PSS = 0. NEST, PRS, ERS,
 * FS5LP, SMPWC and ADMS are never offered.
 */
import { setField } from "../../spec/field.ts";
import { Cap, Ecap } from "../../spec/registers.ts";
import type { ResolvedScalableOptions } from "./scalable-options.ts";

/** CAP bits of scalable mode (0n for a legacy-mode unit). */
export function scalableCapabilityBits(o: ResolvedScalableOptions): bigint {
  if (!o.scalableMode) return 0n;
  return setField(0n, Cap.FL1GP, o.firstStage ? 1 : 0);
}

/** ECAP bits of scalable mode (0n for a legacy-mode unit). */
export function scalableExtendedCapabilityBits(o: ResolvedScalableOptions): bigint {
  if (!o.scalableMode) return 0n;
  let ecap = setField(0n, Ecap.SMTS, 1);
  ecap = setField(ecap, Ecap.SSTS, o.secondStage ? 1 : 0);
  ecap = setField(ecap, Ecap.FSTS, o.firstStage ? 1 : 0);
  // Supervisor requests: offered where second-stage translation is (QEMU 10.0 does the same).
  ecap = setField(ecap, Ecap.SRS, o.secondStage ? 1 : 0);
  if (o.pasidBits > 0) {
    ecap = setField(ecap, Ecap.PASID, 1);
    ecap = setField(ecap, Ecap.PSS, o.pasidBits - 1);
  }
  return ecap;
}
