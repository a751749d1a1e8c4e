/**
 * The register file's bytes and its one write rule (VT-d §11.4):
 *   next = ((old & ~writable) | (value & writable)) & ~(value & writeOneToClear)
 * applied byte by byte, so any access size covers exactly the registers it touches.
 * Reads return `value & ~writeOnly`. Bytes outside every register read 0 and ignore writes.
 */
import { readU32, writeU32 } from "../memory/little-endian.ts";
import type { RegisterSpec } from "./register-table.ts";

export class RegisterFile {
  readonly size: number;
  private readonly value: Uint8Array;
  private readonly writable: Uint8Array;
  private readonly writeOneToClear: Uint8Array;
  private readonly readMask: Uint8Array;
  private readonly resetValue: Uint8Array;
  /** Register starting at each byte offset (undefined elsewhere). */
  readonly byOffset: (RegisterSpec | undefined)[];

  constructor(readonly table: readonly RegisterSpec[], size: number) {
    this.size = size;
    this.value = new Uint8Array(size);
    this.writable = new Uint8Array(size);
    this.writeOneToClear = new Uint8Array(size);
    this.readMask = new Uint8Array(size);
    this.resetValue = new Uint8Array(size);
    this.byOffset = new Array(size);
    for (const r of table) {
      this.byOffset[r.offset] = r;
      const bytes = r.width / 8;
      for (let i = 0; i < bytes; i++) {
        const shift = BigInt(8 * i);
        const at = r.offset + i;
        this.resetValue[at] = Number((r.reset >> shift) & 0xffn);
        this.writable[at] = Number((r.writable >> shift) & 0xffn);
        this.writeOneToClear[at] = Number((r.writeOneToClear >> shift) & 0xffn);
        this.readMask[at] = Number((~r.writeOnly >> shift) & 0xffn);
      }
    }
    this.reset();
  }

  reset(): void {
    this.value.set(this.resetValue);
  }

  /** Snapshot (state/): a copy of the register bytes as hardware holds them (no masks). */
  saveBytes(): Uint8Array {
    return this.value.slice();
  }

  /** Snapshot restore: `bytes` checked by the caller to be `size` long. */
  loadBytes(bytes: Uint8Array): void {
    this.value.set(bytes);
  }

  /** The reset value of the 32 bits at `offset` (a snapshot's constant registers must match it). */
  reset32(offset: number): number {
    return readU32(this.resetValue, offset);
  }

  /** Guest read of `size` bytes at `offset` (any alignment); bytes beyond the file read 0. */
  read(offset: number, size: number): bigint {
    let result = 0n;
    for (let i = size - 1; i >= 0; i--) {
      const at = offset + i;
      const byte = at >= 0 && at < this.size ? this.value[at]! & this.readMask[at]! : 0;
      result = (result << 8n) | BigInt(byte);
    }
    return result;
  }

  /** Guest read of 1, 2 or 4 bytes as an unsigned number (the platform's path: no bigint). */
  readNumber(offset: number, size: number): number {
    let result = 0;
    for (let i = size - 1; i >= 0; i--) {
      const at = offset + i;
      const byte = at >= 0 && at < this.size ? this.value[at]! & this.readMask[at]! : 0;
      result = result * 256 + byte;
    }
    return result;
  }

  /** Guest write of one dword through the write rule (offset dword-aligned, inside the file). */
  writeDword(offset: number, value: number): void {
    for (let i = 0; i < 4; i++) {
      const at = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const w = this.writable[at]!;
      this.value[at] = ((this.value[at]! & ~w) | (v & w)) & ~(v & this.writeOneToClear[at]!);
    }
  }

  /** Hardware's own view and updates (no masks), as 32-bit halves for hot paths. */
  get32(offset: number): number {
    return readU32(this.value, offset);
  }
  set32(offset: number, v: number): void {
    writeU32(this.value, offset, v);
  }
  get64(offset: number): bigint {
    return (BigInt(this.get32(offset + 4)) << 32n) | BigInt(this.get32(offset));
  }
  set64(offset: number, v: bigint): void {
    this.set32(offset, Number(v & 0xffff_ffffn));
    this.set32(offset + 4, Number((v >> 32n) & 0xffff_ffffn));
  }
  /** Sets or clears bits of a 32-bit register. */
  update32(offset: number, set: number, clear: number): void {
    this.set32(offset, ((this.get32(offset) & ~clear) | set) >>> 0);
  }
}
