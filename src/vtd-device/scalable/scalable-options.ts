/**
 * The scalable-mode options, named after QEMU 10.0's intel-iommu properties, and the
 * combinations the spec (or the unit) forbids. Checked once, with the unit's other options.
 */
import { PASID_BITS_MAX } from "../../spec/scalable.ts";

export interface ScalableModeOptions {
  /**
   * ECAP.SMTS: RTADDR.TTM = 01 is accepted and walks scalable-mode root, context, PASID
   * directory and PASID-table entries; IQA.DW = 1 (256-bit descriptors) is accepted (QEMU
   * `x-scalable-mode`). Default false: a legacy-mode unit, exactly as before.
   */
  scalableMode?: boolean;
  /** ECAP.FSTS and CAP.FS1GP: first-stage translation, PGTT 001 (QEMU `x-flts`). Needs scalableMode and awBits 48. Default false. */
  firstStage?: boolean;
  /**
   * ECAP.SSTS: second-stage translation in scalable mode, PGTT 010. Default: on with scalable mode
   * unless `firstStage` is asked for (QEMU 10.0's `x-flts=on` offers the first stage alone).
   */
  secondStage?: boolean;
  /**
   * ECAP.PASID with ECAP.PSS = pasidBits - 1: requests-with-PASID of that many bits, 1..20.
   * Undefined: no requests-with-PASID (ECAP.PASID = 0); requests use RID_PASID. QEMU 10.0's
   * `x-pasid-mode=on` reports PSS = 0, which is `pasidBits: 1`.
   */
  pasidBits?: number;
}

export interface ResolvedScalableOptions {
  scalableMode: boolean;
  firstStage: boolean;
  secondStage: boolean;
  /** 0: requests-with-PASID not supported. */
  pasidBits: number;
}

function flag(name: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") throw new TypeError(`VtdDevice option ${name}: expected true or false, got ${String(value)}`);
  return value;
}

/** The scalable-mode options of `options`, checked; `awBits` is the resolved address width. */
export function resolveScalableOptions(options: ScalableModeOptions, awBits: number): ResolvedScalableOptions {
  const scalableMode = flag("scalableMode", options.scalableMode) ?? false;
  const firstStage = flag("firstStage", options.firstStage);
  const secondStage = flag("secondStage", options.secondStage);
  const pasidBits = options.pasidBits;
  if (pasidBits !== undefined && (typeof pasidBits !== "number" || !Number.isInteger(pasidBits) || pasidBits < 1 || pasidBits > PASID_BITS_MAX)) {
    throw new RangeError(`VtdDevice option pasidBits: expected an integer 1..${PASID_BITS_MAX} (ECAP.PSS + 1), got ${String(pasidBits)}`);
  }
  if (!scalableMode) {
    for (const [name, given] of [["firstStage", firstStage], ["secondStage", secondStage], ["pasidBits", pasidBits]] as const) {
      if (given !== undefined && given !== false) {
        throw new RangeError(`VtdDevice option ${name}: needs scalableMode (PASID-granular translation exists only in scalable mode, ECAP.SMTS)`);
      }
    }
    return { scalableMode: false, firstStage: false, secondStage: false, pasidBits: 0 };
  }
  const first = firstStage ?? false;
  const second = secondStage ?? !first;
  if (!first && !second) {
    throw new RangeError("VtdDevice options firstStage and secondStage: a scalable-mode unit needs at least one translation stage (ECAP.FSTS or ECAP.SSTS)");
  }
  if (first && awBits !== 48) {
    throw new RangeError(`VtdDevice option firstStage: needs awBits 48 (4-level first-stage paging translates 48-bit addresses), got awBits ${awBits}`);
  }
  return { scalableMode: true, firstStage: first, secondStage: second, pasidBits: pasidBits ?? 0 };
}
