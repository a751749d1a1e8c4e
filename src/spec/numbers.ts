/**
 * Plain numeric facts the code needs in many places: 64-bit values are handled as two 32-bit
 * halves in hot paths (VT-d registers and entries are little-endian qwords).
 */
export const TWO_POW_32 = 4294967296;

/** A qword from its halves (exact below 2^53; beyond it the caller must use bigint). */
export function fromHalves(low: number, high: number): number {
  return (high >>> 0) * TWO_POW_32 + (low >>> 0);
}
