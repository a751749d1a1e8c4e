import { FaultReason } from "../spec/fault-reasons.ts";

/**
 * The answer to a device's DMA request. Allocation-free: the unit hands out shared frozen objects.
 * `reason` is the remapping fault reason, or `Abort` when the (translated) address is outside
 * guest RAM: the request is aborted as an unsupported request, and no fault is recorded.
 */
export type DmaResult = { readonly ok: true } | { readonly ok: false; readonly reason: FaultReason | typeof DMA_ABORT };

/** Not a VT-d fault reason: the target of the transfer is not RAM (master abort). */
export const DMA_ABORT = 0 as const;

export const DMA_OK: DmaResult = Object.freeze({ ok: true });
const failures = new Map<number, DmaResult>();
export function dmaFailure(reason: FaultReason | typeof DMA_ABORT): DmaResult {
  let result = failures.get(reason);
  if (!result) {
    result = Object.freeze({ ok: false, reason });
    failures.set(reason, result);
  }
  return result;
}
