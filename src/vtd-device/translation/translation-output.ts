/**
 * Where a translation's answer goes, and the last check every translation makes before it: the
 * interrupt range 0xFEE0_0000-0xFEEF_FFFF is never memory (VT-d §3.14). An output inside it is a
 * fault (legacy 0xE, scalable mode 0x87); an output running into it is clipped short of it.
 */
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT } from "../../spec/entries.ts";

/** The translator's result fields. */
export interface TranslationResult {
  resultOutput: number;
  resultLimit: number;
  resultFpd: boolean;
}

/** Stores `limit` bytes at `address` as the result, or returns `interruptFault` (0 when stored). */
export function setOutput(into: TranslationResult, address: number, limit: number, interruptFault: number): number {
  if (address <= INTERRUPT_RANGE_LIMIT && address + limit > INTERRUPT_RANGE_BASE) {
    if (address >= INTERRUPT_RANGE_BASE) return interruptFault;
    limit = INTERRUPT_RANGE_BASE - address;
  }
  into.resultOutput = address;
  into.resultLimit = limit;
  return 0;
}
