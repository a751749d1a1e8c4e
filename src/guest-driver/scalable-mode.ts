/**
 * Whether the driver runs the unit in scalable mode, and with which stage new domains translate:
 * the options checked against what the unit offers. As Linux 6.1 (`sm_on`): scalable mode only
 * where ECAP.SMTS is set and queued invalidation works (else legacy mode, saying why); the stage
 * of a DMA domain is the one the unit offers, first stage when it offers both
 * (`first_level_by_default`). A stage the unit does not offer, a stage without scalable mode, or
 * scalable mode with register-based invalidation is an error naming the option.
 */
import type { UnitCapabilities } from "./discovery.ts";
import type { DomainStage } from "./domain.ts";
import { VtdDriverError } from "./errors.ts";
import type { DriverOptions } from "./options.ts";

export interface ScalableChoice {
  /** Scalable mode asked for and offered (the queue may still turn it off: see the driver). */
  enabled: boolean;
  /** The stage of new domains (second in legacy mode). */
  stage: DomainStage;
  /** Why scalable mode was asked for and is not used. */
  fallback?: string;
}

export function resolveScalableMode(caps: UnitCapabilities, o: DriverOptions): ScalableChoice {
  const { scalableMode, stage } = o;
  if (scalableMode !== undefined && typeof scalableMode !== "boolean") {
    throw new VtdDriverError("bad-argument", `scalableMode ${String(scalableMode)}: expected true or false`);
  }
  if (stage !== undefined && stage !== "first" && stage !== "second") {
    throw new VtdDriverError("bad-argument", `stage ${String(stage)}: expected "first" or "second"`);
  }
  if (!scalableMode) {
    if (stage !== undefined) throw new VtdDriverError("bad-argument", `stage "${stage}": needs scalableMode (translation stages are chosen in scalable mode only)`);
    return { enabled: false, stage: "second" };
  }
  if (o.registerInvalidation) {
    throw new VtdDriverError("bad-argument", "scalableMode with registerInvalidation: scalable mode needs queued invalidation (256-bit descriptors, VT-d §6.5.2)");
  }
  if (!caps.scalableMode) return { enabled: false, stage: "second", fallback: "ECAP.SMTS = 0" };
  if (!caps.queuedInvalidation) return { enabled: false, stage: "second", fallback: "ECAP.QI = 0 (scalable mode needs queued invalidation)" };
  if (stage === "first" && !caps.firstStage) throw new VtdDriverError("unsupported", 'stage "first": the unit does not offer first-stage translation (ECAP.FSTS = 0)');
  if (stage === "second" && !caps.secondStage) throw new VtdDriverError("unsupported", 'stage "second": the unit does not offer second-stage translation in scalable mode (ECAP.SSTS = 0)');
  return { enabled: true, stage: stage ?? (caps.firstStage ? "first" : "second") };
}
