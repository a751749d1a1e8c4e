/** A bit field of a register, entry or descriptor: `width` bits starting at bit `shift`. */
export interface Field {
  readonly shift: number;
  readonly width: number;
}

export function field(shift: number, width = 1): Field {
  return { shift, width };
}

export function fieldMask(f: Field): bigint {
  return ((1n << BigInt(f.width)) - 1n) << BigInt(f.shift);
}

export function getField(value: bigint, f: Field): bigint {
  return (value >> BigInt(f.shift)) & ((1n << BigInt(f.width)) - 1n);
}

export function setField(value: bigint, f: Field, fieldValue: bigint | number): bigint {
  const mask = fieldMask(f);
  return (value & ~mask) | ((BigInt(fieldValue) << BigInt(f.shift)) & mask);
}

/** Bits `lo..hi` inclusive as a bigint mask. */
export function bits(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

export function bit(n: number): bigint {
  return 1n << BigInt(n);
}
