/**
 * What the guest driver needs from the machine it runs on, and nothing more. Two implementations:
 * the in-process machine (in-process-platform.ts: GuestRam + VtdDevice, direct calls) and v86
 * (over v86's memory bus and MMIO). Every address is a guest-physical byte address as a number
 * (below 2^53); 64-bit values are bigints.
 *
 * Rules an implementation must keep:
 * - `memory.write64` is ONE store: the unit sees the old or the new value, never half of each
 *   (on a 32-bit CPU: CMPXCHG8B or an SSE MOVQ, not two MOVs). The superpage split relies on it.
 * - `mmio.write64` on a platform with only 32-bit MMIO is two 32-bit writes, low dword first
 *   (the unit acts on the upper half of CCMD / IOTLB_REG, VT-d §11.4).
 * - Interrupt handlers and timer callbacks never run inside a driver call: they run later
 *   (a microtask, an event-loop turn, or when the clock is advanced). `clock.spin` delivers none,
 *   as a CPU polling with interrupts disabled.
 */

/** Guest-physical memory as the CPU sees it (through its caches). */
export interface PhysicalMemory {
  read32(address: number): number;
  read64(address: number): bigint;
  write32(address: number, value: number): void;
  /** One 64-bit store (see above). */
  write64(address: number, value: bigint): void;
  readBytes(address: number, length: number): Uint8Array;
  writeBytes(address: number, data: Uint8Array): void;
}

/** Memory-mapped I/O at absolute guest-physical addresses (the unit's registers live here). */
export interface Mmio {
  read32(address: number): number;
  /** Two 32-bit reads, low first, where the platform has no 64-bit MMIO. */
  read64(address: number): bigint;
  write32(address: number, value: number): void;
  /** Two 32-bit writes, low dword first, where the platform has no 64-bit MMIO. */
  write64(address: number, value: bigint): void;
}

/** Page-granular guest memory for the driver's own structures (tables, queue, status words). */
export interface PageAllocator {
  /**
   * `count` contiguous 4 KiB pages, zeroed by the CPU (so, like any CPU store, the zeroes may sit
   * in the CPU cache: a driver of a non-coherent unit flushes the page before the unit reads it).
   * Throws when memory is exhausted.
   */
  allocatePages(count: number): number;
  freePages(address: number, count: number): void;
}

/** The CPU cache: what CLFLUSH does. */
export interface CpuCache {
  readonly lineSize: number;
  /** Writes back and invalidates every line touching [address, address + length). */
  flush(address: number, length: number): void;
}

/** A CPU cache that also keeps the record tests read (both platforms give one). */
export interface RecordedCpuCache extends CpuCache {
  /** CLFLUSH count (lines). */
  readonly flushes: number;
  /** Addresses of lines the CPU stored to and did not flush since: stores a non-snooping unit cannot see yet. */
  dirtyLines(): number[];
}

/** An MSI the unit is programmed to send (FEADDR/FEUADDR/FEDATA or IEADDR/IEUADDR/IEDATA). */
export interface MsiMessage {
  address: number;
  upperAddress: number;
  data: number;
}

export interface InterruptController {
  /** Allocates a vector for `handler` and returns the message that raises it. */
  allocateMsi(name: "fault" | "completion", handler: () => void): MsiMessage;
}

/** Time in milliseconds, as the platform (and the unit) sees it. */
export interface Clock {
  now(): number;
  /** Busy-waits `ms` (the unit's time moves on; no interrupt or timer is delivered meanwhile). */
  spin(ms: number): void;
  /** Calls `callback` once, `ms` from now, outside any driver call. Returns a cancel function. */
  after(ms: number, callback: () => void): () => void;
}

export interface Platform {
  readonly memory: PhysicalMemory;
  readonly mmio: Mmio;
  readonly allocator: PageAllocator;
  readonly cache: CpuCache;
  readonly interrupts: InterruptController;
  readonly clock: Clock;
  /** The ACPI table with this signature ("DMAR"), if the platform has one. */
  acpiTable?(signature: string): Uint8Array | undefined;
}
