/**
 * Reading and writing the sections of a unit snapshot (snapshot.ts). A snapshot is plain JSON:
 * typed arrays become arrays of numbers, byte strings become hex. Reading checks everything it
 * takes (presence, type, length, range) and throws a SnapshotError naming the section, the field
 * and what is wrong; it builds fresh typed arrays and never touches a unit.
 */

/** A snapshot the unit refuses: of another format, version or configuration, damaged or truncated. */
export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnapshotError";
  }
}

type IntArray = Int32Array | Uint8Array | Uint16Array;
type IntArrayType = { new (length: number): IntArray };

/** A plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What a value is, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "string") return value.length > 40 ? "a string" : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return typeof value;
}

/** One section of a snapshot being read: each accessor checks the field it returns. */
export class Section {
  private constructor(readonly name: string, private readonly value: Record<string, unknown>) {}

  /** The section `name` of `snapshot`; it must be an object. */
  static of(snapshot: Record<string, unknown>, name: string): Section {
    const value = snapshot[name];
    if (!isRecord(value)) throw new SnapshotError(`snapshot section ${name}: missing or not an object (got ${describe(value)})`);
    return new Section(name, value);
  }

  /** A section nested in this one. */
  section(key: string): Section {
    const value = this.value[key];
    if (!isRecord(value)) this.fail(`${key}: expected an object, got ${describe(value)}`);
    return new Section(`${this.name}.${key}`, value);
  }

  fail(what: string): never {
    throw new SnapshotError(`snapshot section ${this.name}: ${what}`);
  }

  raw(key: string): unknown {
    return this.value[key];
  }

  keys(): string[] {
    return Object.keys(this.value);
  }

  bool(key: string): boolean {
    const v = this.value[key];
    if (typeof v !== "boolean") this.fail(`${key}: expected true or false, got ${describe(v)}`);
    return v;
  }

  /** An integer in [min, max]. */
  int(key: string, min: number, max: number): number {
    const v = this.value[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) this.fail(`${key}: expected an integer in ${min}..${max}, got ${describe(v)}`);
    return v;
  }

  /** A finite number in [min, max]. */
  number(key: string, min: number, max: number): number {
    const v = this.value[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) this.fail(`${key}: expected a number in ${min}..${max}, got ${describe(v)}`);
    return v;
  }

  /** An array of `length` values, unchecked (the caller checks them). */
  array(key: string, length?: number): unknown[] {
    const v = this.value[key];
    if (!Array.isArray(v)) this.fail(`${key}: expected an array, got ${describe(v)}`);
    if (length !== undefined && v.length !== length) this.fail(`${key}: expected ${length} numbers, got ${v.length}`);
    return v;
  }

  /** `length` integers in [min, max], into a fresh typed array. */
  ints<T extends IntArray>(key: string, length: number, min: number, max: number, type: { new (length: number): T } & IntArrayType): T {
    const list = this.array(key, length);
    const out = new type(length);
    for (let i = 0; i < length; i++) {
      const x = list[i];
      if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max) this.fail(`${key}[${i}]: expected an integer in ${min}..${max}, got ${describe(x)}`);
      out[i] = x;
    }
    return out as T;
  }

  /** `length` finite numbers in [min, max], into a fresh Float64Array. */
  numbers(key: string, length: number, min: number, max: number): Float64Array {
    const list = this.array(key, length);
    const out = new Float64Array(length);
    for (let i = 0; i < length; i++) {
      const x = list[i];
      if (typeof x !== "number" || !Number.isFinite(x) || x < min || x > max) this.fail(`${key}[${i}]: expected a number in ${min}..${max}, got ${describe(x)}`);
      out[i] = x;
    }
    return out;
  }

  /** A hex string of exactly `bytes` bytes, into a fresh Uint8Array. */
  hex(key: string, bytes: number): Uint8Array {
    const v = this.value[key];
    if (typeof v !== "string") this.fail(`${key}: expected a hex string, got ${describe(v)}`);
    if (v.length !== 2 * bytes) this.fail(`${key}: expected ${bytes} bytes (${2 * bytes} hex digits), got ${v.length} digits`);
    if (!/^[0-9a-f]*$/.test(v)) this.fail(`${key}: not a lower-case hex string`);
    const out = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i++) out[i] = parseInt(v.slice(2 * i, 2 * i + 2), 16);
    return out;
  }
}

/** A typed array as a plain array of numbers (JSON keeps every finite double exactly). */
export function numbersOf(a: ArrayLike<number>): number[] {
  return Array.from(a);
}

export function hexOf(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i]! < 16 ? "0" : "") + bytes[i]!.toString(16);
  return s;
}

let crcTable: Int32Array | undefined;

function crc32Table(): Int32Array {
  let table = crcTable;
  if (!table) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
    crcTable = table;
  }
  return table;
}

/**
 * CRC-32 (IEEE) of bytes, continuing from `previous` (the CRC of what came before; 0 to start),
 * so that several arrays can be checked as one sequence.
 */
export function crc32Bytes(bytes: Uint8Array, previous = 0): number {
  const table = crc32Table();
  let crc = previous ^ -1;
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

/** CRC-32 (IEEE) of a string's UTF-16 code units taken as bytes (low byte, then high byte when set). */
export function crc32(text: string): number {
  const table = crc32Table();
  let crc = -1;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    crc = table[(crc ^ code) & 0xff]! ^ (crc >>> 8);
    if (code > 0xff) crc = table[(crc ^ (code >>> 8)) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ -1) >>> 0;
}
