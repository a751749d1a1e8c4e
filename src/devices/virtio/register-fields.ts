/**
 * A register structure as a table of little-endian fields, accessed with any size at any offset:
 * v86 splits 16-bit MMIO into two byte accesses and 64-bit ones into two dwords, so a field may
 * be written a byte at a time. A write merges its bytes into the field's current value and hands
 * the field the merged value (once per field touched); bytes no field covers read as `gap`.
 */
export interface RegisterField {
  readonly offset: number;
  readonly width: 1 | 2 | 4;
  read(): number;
  /** Absent: read-only (writes are dropped). */
  write?(value: number): void;
}

export class RegisterFields {
  private readonly fieldAt: Int16Array;

  constructor(
    private readonly fields: readonly RegisterField[],
    readonly size: number,
    private readonly gap = 0xff,
  ) {
    this.fieldAt = new Int16Array(size).fill(-1);
    fields.forEach((field, i) => {
      for (let b = field.offset; b < field.offset + field.width; b++) {
        if (b >= size || this.fieldAt[b] !== -1) throw new Error(`register field at 0x${field.offset.toString(16)} overlaps another or the end`);
        this.fieldAt[b] = i;
      }
    });
  }

  read(offset: number, size: number): bigint {
    let low = 0;
    let high = 0;
    for (let i = 0; i < size; i++) {
      const byte = this.byteAt(offset + i);
      if (i < 4) low |= byte << (8 * i);
      else high |= byte << (8 * (i - 4));
    }
    return size > 4 ? (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0) : BigInt(low >>> 0);
  }

  write(offset: number, size: number, value: bigint): void {
    let i = 0;
    while (i < size) {
      const at = offset + i;
      const index = at >= 0 && at < this.size ? this.fieldAt[at]! : -1;
      if (index < 0) {
        i++;
        continue;
      }
      const field = this.fields[index]!;
      let merged = field.read();
      while (i < size && offset + i < this.size && this.fieldAt[offset + i] === index) {
        const shift = 8 * (offset + i - field.offset);
        const byte = Number((value >> BigInt(8 * i)) & 0xffn);
        merged = ((merged & ~(0xff << shift)) | (byte << shift)) >>> 0;
        i++;
      }
      field.write?.(merged);
    }
  }

  private byteAt(at: number): number {
    const index = at >= 0 && at < this.size ? this.fieldAt[at]! : -1;
    if (index < 0) return this.gap;
    const field = this.fields[index]!;
    return (field.read() >>> (8 * (at - field.offset))) & 0xff;
  }
}
