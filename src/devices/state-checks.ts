/**
 * The checks a saved state's fields go through before anything is restored (edu, virtio-blk, the
 * v86 machine's part): one place for what a dword, a count and a list of them are.
 */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
/** An integer in 0..max. */
export const isUint = (v: unknown, max: number): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
export const isDword = (v: unknown): v is number => isUint(v, 0xffff_ffff);
/** A counter: a non-negative safe integer. */
export const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
export const isDwords = (v: unknown, length: number): v is number[] => Array.isArray(v) && v.length === length && v.every(isDword);
export const isCounts = (v: unknown, length: number): v is number[] => Array.isArray(v) && v.length === length && v.every(isCount);
