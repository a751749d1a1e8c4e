/**
 * A register structure as a table of little-endian fields, accessed with 1, 2 or 4 bytes at any
 * offset, with numbers: v86 splits 16-bit MMIO into two byte accesses and 64-bit ones into two
 * dwords, so a field may be written a byte at a time. A write merges its bytes into the field's
 * current value and hands the field the merged value (once per field touched); bytes no field
 * covers read as `gap`.
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

  /** The `size` (at most 4) bytes at `offset`, little-endian, as an unsigned number. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.byteAt(offset + i) << (8 * i);
    return value >>> 0;
  }

  /** Writes the low `size` (at most 4) bytes of `value` at `offset`. */
  write(offset: number, size: number, value: number): void {
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
        const byte = (value >>> (8 * i)) & 0xff;
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
