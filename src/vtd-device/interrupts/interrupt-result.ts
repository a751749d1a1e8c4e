import type { FaultReason } from "../../spec/fault-reasons.ts";
import { NOT_AN_INTERRUPT } from "./interrupt-remapping.ts";

/**
 * The answer to `interruptRequest`: the compatibility-format MSI the platform delivers (address
 * 0xFEExxxxx, data), or why none goes out: an interrupt-remapping fault (20h-26h), or
 * NOT_AN_INTERRUPT (0) when the write was no interrupt request (nothing recorded). Failures are
 * shared frozen objects; a delivered interrupt is one small object (the bigint edge).
 */
export type InterruptResult =
  | { readonly ok: true; readonly address: bigint; readonly data: number }
  | { readonly ok: false; readonly reason: FaultReason | typeof NOT_AN_INTERRUPT };

const failures = new Map<number, InterruptResult>();
export function interruptFailure(reason: FaultReason | typeof NOT_AN_INTERRUPT): InterruptResult {
  let result = failures.get(reason);
  if (!result) {
    result = Object.freeze({ ok: false, reason });
    failures.set(reason, result);
  }
  return result;
}
