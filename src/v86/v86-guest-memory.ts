/**
 * GuestMemory over v86's RAM. Writes keep v86's JIT coherent the way its own DMA does
 * (`cpu.write_blob` calls `jit_dirty_cache(start, end)` before storing): compiled code in the
 * written range is dropped, for the unit's fast path over `direct` too (`afterDirectWrite`).
 * The legacy VGA window 0xA0000-0xBFFFF is MMIO in v86, not RAM: `read`/`write` refuse it, but
 * the `direct` fast path covers all of RAM, so a DMA there reaches the unused RAM bytes under
 * the window (never VGA memory, never anything outside RAM).
 */
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import type { V86Cpu } from "./internals.ts";
import { LiveBytes } from "./wasm-views.ts";

export const VGA_HOLE_START = 0xa_0000;
export const VGA_HOLE_END = 0xc_0000;

export class V86GuestMemory implements GuestMemory {
  readonly size: number;
  private readonly ram: LiveBytes;

  constructor(private readonly cpu: V86Cpu) {
    this.size = cpu.memory_size[0]! >>> 0;
    this.ram = new LiveBytes(cpu.wasm_memory, cpu.mem8.byteOffset, this.size);
  }

  /** All of RAM from guest-physical 0; a fresh view after wasm memory grew. */
  get direct(): Uint8Array {
    return this.ram.bytes;
  }

  afterDirectWrite(address: number, length: number): void {
    if (length > 0) this.cpu.jit_dirty_cache(address, address + length);
  }

  read(address: bigint, into: Uint8Array): boolean {
    const start = this.offsetOf(address, into.length);
    if (start < 0) return false;
    into.set(this.ram.bytes.subarray(start, start + into.length));
    return true;
  }

  write(address: bigint, data: Uint8Array): boolean {
    const start = this.offsetOf(address, data.length);
    if (start < 0) return false;
    if (data.length === 0) return true;
    this.cpu.jit_dirty_cache(start, start + data.length);
    this.ram.bytes.set(data, start);
    return true;
  }

  private offsetOf(address: bigint, length: number): number {
    if (address < 0n || address + BigInt(length) > BigInt(this.size)) return -1;
    const start = Number(address);
    if (start < VGA_HOLE_END && start + length > VGA_HOLE_START) return -1;
    return start;
  }
}
