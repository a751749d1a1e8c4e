/**
 * The guest driver's Platform on a v86 machine: the driver runs on the host (in JavaScript) but
 * reaches the machine only the way a guest's CPU does.
 *
 * - Memory: v86's physical read/write entry points (`cpu.read32s`, `cpu.write32`, `cpu.read8`,
 *   `cpu.write8`), which are what the CPU's own loads and stores end in: RAM with v86's JIT kept
 *   coherent, or the memory map for MMIO. `write64` is ONE 8-byte store into RAM after marking the
 *   range dirty for the JIT, as v86 does for a guest's MOVQ (v86 exports no physical 64-bit store).
 * - The unit's registers: the same entry points at 0xFED90000, so every access goes through v86's
 *   memory map (`memory_map_read32/write32`) to the handler src/v86/unit-mmio.ts installed there,
 *   never to VtdDevice directly. 64-bit registers as two 32-bit accesses, low dword first, as a
 *   32-bit guest does (v86 has no 64-bit MMIO).
 * - Pages for the driver: a range of guest RAM the guest does not use (default 16-32 MiB; the
 *   caller picks a range its guest leaves alone), zeroed with CPU stores.
 * - CLFLUSH: v86's memory is coherent and it has no cache to flush. `cache.flush` counts the lines,
 *   reports each to the machine's CLFLUSH hook (`machine.clflush`: its observers, and the unit,
 *   which with ECAP.C = 0 sees a table store only once its line is flushed), and, for a unit that
 *   does not snoop, keeps a record of lines the CPU stored to and did not flush since:
 *   `cache.dirtyLines()`.
 * - Interrupts: the v86 platform's `msiListener` sees every MSI before the LAPIC; messages to a
 *   vector allocated here are consumed. The unit raises them inside register writes (MMIO
 *   handlers), so the platform defers them to v86's next safe point (safe-point.ts); from there a
 *   microtask runs the handler once v86's slice has returned to the event loop (driver-interrupts.ts).
 * - Time: the unit's clock (`device.now`), which the v86 platform advances at every safe point by
 *   v86's own elapsed time (wall-clock based). `clock.spin(ms)` is a CPU polling with interrupts
 *   off: the unit's clock is moved on by `ms` at once (no wall time is burnt, nothing is
 *   delivered), so the unit's clock runs ahead of v86's by the total spun. `clock.after` timers
 *   are due in unit time and run like interrupts: checked at safe points, run in a microtask.
 *
 * Keeping the CPU running. JavaScript is single-threaded: while a synchronous driver call runs,
 * v86 does not execute, just as a driver on the only CPU with interrupts disabled is never
 * interrupted. Between driver calls (whenever the host awaits), v86 runs its slices back to back;
 * the guest must keep running for safe points, time, interrupts and timers to happen. Any guest
 * that leaves the allocator's range alone will do; src/v86/idle-guest.ts is a tiny one that spins
 * (interrupts on, all PIC lines masked) and exits on request. So driver calls always run between
 * v86's slices, in the host's event loop, never inside v86's main loop; asynchronous completions
 * reach the driver through v86's own path (unit -> deferred MSI -> safe point -> msiListener -> handler).
 *
 * No node: imports (usable from a page).
 */
import type { Machine } from "./machine.ts";
import type { V86Cpu } from "./internals.ts";
import { DriverInterrupts } from "./driver-interrupts.ts";
import { installPlatform, type Platform as V86Platform, type PlatformOptions } from "./platform.ts";
import { VGA_HOLE_END, VGA_HOLE_START } from "./v86-guest-memory.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { PAGE_SIZE } from "../spec/entries.ts";
import { VTD_UNIT_BASE } from "../spec/platform.ts";
import type { VtdDevice } from "../vtd-device/device.ts";
import type { Clock, InterruptController, Mmio, PhysicalMemory, Platform, RecordedCpuCache } from "../guest-driver/platform.ts";
import { findAcpiTable } from "../guest-driver/acpi-scan.ts";
import { cpuPhysicalMemory, type CpuAccess } from "../guest-driver/cpu-memory.ts";
import { rangePageAllocator, type RangePageAllocator } from "../guest-driver/page-allocator.ts";

const LINE = 64;
/** The first MiB holds the IVT, the BIOS data and ACPI areas and the VGA window: never the driver's. */
const LOW_MEMORY_END = 0x10_0000;
export const DEFAULT_ALLOCATOR_BASE = 16 << 20;
export const DEFAULT_ALLOCATOR_BYTES = 16 << 20;

export interface V86DriverPlatformOptions {
  /** The v86 platform's options (unit, edu, ACPI, more PCI functions); its `msiListener` is this platform's. */
  platform?: Omit<PlatformOptions, "msiListener">;
  /** Driver pages come from [allocatorBase, allocatorBase + allocatorBytes): RAM the guest must not use. Default 16 MiB, 16 MiB. */
  allocatorBase?: number;
  allocatorBytes?: number;
  /** Keep the record of stored, unflushed lines (`cache.dirtyLines`). Default: when the unit is not coherent (ECAP.C = 0). */
  trackUnflushedLines?: boolean;
}

/** v86's physical byte accessors, which internals.ts does not declare (checked at construction). */
type CpuBus = V86Cpu & {
  read8(address: number): number;
  write8(address: number, value: number): void;
};

export class V86DriverPlatform implements Platform {
  readonly machine: Machine;
  /** The v86 platform this one installed: the unit, edu, the PCI bus, the DMAR table. */
  readonly v86: V86Platform;
  readonly device: VtdDevice;
  /** RAM as devices and loaders reach it (not through the CPU): for test data. */
  readonly ram: GuestMemory;
  readonly unitBase = VTD_UNIT_BASE;
  readonly ramBytes: number;
  readonly memory: PhysicalMemory;
  readonly mmio: Mmio;
  readonly allocator: RangePageAllocator;
  /** Its `dirtyLines()` is empty unless tracking (see the options). */
  readonly cache: RecordedCpuCache;
  readonly interrupts: InterruptController;
  readonly clock: Clock;
  /** 32-bit MMIO accesses made through v86's memory map. */
  mmioAccesses = 0;
  /** MSIs that reached a handler here, by the name they were allocated for. */
  readonly interruptsDelivered: DriverInterrupts["delivered"];
  /** v86 safe points seen: each one means v86 executed guest code since the previous. */
  safePointsSeen = 0;
  /** Errors thrown by interrupt handlers or timer callbacks (they run from the event loop, with nobody to catch them). */
  readonly handlerErrors: unknown[];

  private readonly cpu: CpuBus;
  private readonly tracking: boolean;
  private readonly unflushed = new Set<number>();
  private flushCount = 0;
  private readonly driverInterrupts: DriverInterrupts;
  private safePointWaiters: (() => void)[] = [];
  private view: DataView;

  constructor(machine: Machine, options: V86DriverPlatformOptions = {}) {
    this.machine = machine;
    const cpu = machine.cpu as CpuBus;
    for (const name of ["read8", "write8", "read32s", "write32", "jit_dirty_cache"] as const) {
      if (typeof cpu[name] !== "function") throw new Error(`V86DriverPlatform: v86 lacks cpu.${name}() (expected v86 0.5.462)`);
    }
    this.cpu = cpu;
    this.ramBytes = cpu.memory_size[0]! >>> 0;
    this.view = this.ramView();
    const pages = this.allocatorRange(options); // checked before anything is installed
    const interrupts = new DriverInterrupts(() => this.device.now);
    this.driverInterrupts = interrupts;
    this.interruptsDelivered = interrupts.delivered;
    this.handlerErrors = interrupts.errors;
    this.v86 = installPlatform(machine, { ...options.platform, msiListener: (address, data) => interrupts.receiveMsi(address, data) });
    this.device = this.v86.device;
    this.ram = machine.memory;
    this.tracking = options.trackUnflushedLines ?? !this.device.options.coherent;
    machine.safePoints.onTick(() => this.atSafePoint());

    this.memory = this.cpuMemory();
    this.mmio = this.cpuMmio();
    this.allocator = this.pageAllocator(pages.base, pages.limit);
    const self = this;
    this.cache = {
      lineSize: LINE,
      flush: (address, length) => this.flushLines(address, length),
      get flushes() {
        return self.flushCount;
      },
      dirtyLines: () => [...this.unflushed].sort((a, b) => a - b),
    };
    this.interrupts = { allocateMsi: (name, handler) => interrupts.allocateMsi(name, handler) };
    this.clock = {
      now: () => this.device.now,
      spin: (ms) => {
        if (ms > 0) this.device.advanceTime(ms);
      },
      after: (ms, callback) => interrupts.after(ms, callback),
    };
  }

  /** MSIs seen that are not this platform's (left to the LAPIC). */
  get foreignInterrupts(): number {
    return this.driverInterrupts.foreign;
  }

  /** The ACPI table as the guest finds it in RAM (RSDP scan), e.g. the DMAR the v86 platform installed. */
  acpiTable(signature: string): Uint8Array | undefined {
    return findAcpiTable(this.memory, this.ramBytes, signature);
  }

  /** Guest instructions v86 executed so far. */
  get instructions(): number {
    return this.machine.instructions;
  }

  // ---- waiting from the host while v86 runs ----

  /** Resolves after v86's next safe point (the guest has executed meanwhile); rejects if none comes within `timeoutMs` of wall time. */
  nextSafePoint(timeoutMs = 10_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.safePointWaiters = this.safePointWaiters.filter((w) => w !== waiter);
        reject(new Error(`V86DriverPlatform: no v86 safe point within ${timeoutMs} ms (is the machine running a guest?)`));
      }, timeoutMs);
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      this.safePointWaiters.push(waiter);
    });
  }

  /** Lets v86 run until `condition` holds (checked after each safe point's deliveries). */
  async until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!condition()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`V86DriverPlatform: ${what} did not happen within ${timeoutMs} ms of wall time`);
      await this.nextSafePoint(left);
      await Promise.resolve(); // let this safe point's deliveries (a microtask) run first
    }
  }

  /** Awaits `promise` while v86 runs (it needs no stepping here: time passes by itself); rejects after `timeoutMs` of wall time. */
  async settle<T>(promise: Promise<T>, timeoutMs = 60_000): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`V86DriverPlatform.settle: not settled within ${timeoutMs} ms of wall time`)), timeoutMs);
    });
    try {
      return await Promise.race([promise, limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** At every v86 safe point (inside v86's main loop): waiters resolved (they run after v86's slice), due interrupts and timers noted. */
  private atSafePoint(): void {
    this.safePointsSeen++;
    if (this.safePointWaiters.length > 0) {
      const waiters = this.safePointWaiters;
      this.safePointWaiters = [];
      for (const waiter of waiters) waiter();
    }
    this.driverInterrupts.atSafePoint();
  }

  // ---- the CPU's view of memory ----

  private ramView(): DataView {
    return new DataView(this.cpu.wasm_memory.buffer, this.cpu.mem8.byteOffset, this.ramBytes);
  }

  private checkRam(address: number, length: number, alignment: number): void {
    if (!Number.isInteger(address) || address < 0 || address + length > this.ramBytes || (address < VGA_HOLE_END && address + length > VGA_HOLE_START)) {
      throw new RangeError(`V86DriverPlatform: CPU access at 0x${address.toString(16)} (+${length}) is not RAM`);
    }
    if (address % alignment !== 0) throw new RangeError(`V86DriverPlatform: unaligned ${length}-byte access at 0x${address.toString(16)}`);
  }

  private stored(address: number, length: number): void {
    if (!this.tracking) return;
    for (let line = address - (address % LINE); line < address + length; line += LINE) this.unflushed.add(line);
  }

  private cpuMemory(): PhysicalMemory {
    const cpu = this.cpu;
    const access: CpuAccess = {
      read8: (address) => cpu.read8(address),
      read32: (address) => cpu.read32s(address) >>> 0,
      write8: (address, value) => cpu.write8(address, value),
      write32: (address, value) => cpu.write32(address, value | 0),
      write64: (address, value) => {
        // One 8-byte store, as v86 performs a guest's MOVQ: JIT code in the range dropped, then the store.
        cpu.jit_dirty_cache(address, address + 8);
        if (this.view.buffer !== cpu.wasm_memory.buffer) this.view = this.ramView();
        this.view.setBigUint64(address, BigInt.asUintN(64, value), true);
      },
    };
    return cpuPhysicalMemory(access, (address, length, alignment) => this.checkRam(address, length, alignment), (address, length) => this.stored(address, length));
  }

  private flushLines(address: number, length: number): void {
    if (length <= 0) return;
    const hook = this.machine.clflush;
    for (let line = address - (address % LINE); line < address + length; line += LINE) {
      this.flushCount++;
      this.unflushed.delete(line);
      hook.listener?.(line);
      hook.physicallyFlushed(line);
    }
  }

  // ---- MMIO (the unit's registers, edu's BAR) through v86's memory map ----

  private cpuMmio(): Mmio {
    const cpu = this.cpu;
    const check = (address: number) => {
      if (!Number.isInteger(address) || address < 0 || address > 0xffff_fffc || address % 4 !== 0) {
        throw new RangeError(`V86DriverPlatform: MMIO address 0x${address.toString(16)} is not a 4-byte aligned 32-bit address`);
      }
    };
    const read = (address: number) => {
      this.mmioAccesses++;
      return cpu.read32s(address | 0) >>> 0;
    };
    const write = (address: number, value: number) => {
      this.mmioAccesses++;
      cpu.write32(address | 0, value | 0);
    };
    return {
      read32: (address) => {
        check(address);
        return read(address);
      },
      read64: (address) => {
        check(address);
        const low = read(address);
        return (BigInt(read(address + 4)) << 32n) | BigInt(low);
      },
      write32: (address, value) => {
        check(address);
        write(address, value);
      },
      write64: (address, value) => {
        check(address);
        write(address, Number(value & 0xffff_ffffn));
        write(address + 4, Number((value >> 32n) & 0xffff_ffffn));
      },
    };
  }

  // ---- pages for the driver ----

  private allocatorRange(options: V86DriverPlatformOptions): { base: number; limit: number } {
    const base = options.allocatorBase ?? DEFAULT_ALLOCATOR_BASE;
    const bytes = options.allocatorBytes ?? Math.min(DEFAULT_ALLOCATOR_BYTES, this.ramBytes - base);
    const limit = base + bytes;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(bytes) || base % PAGE_SIZE !== 0 || bytes % PAGE_SIZE !== 0 || bytes <= 0 || base < LOW_MEMORY_END || limit > this.ramBytes) {
      throw new RangeError(
        `V86DriverPlatform options allocatorBase/allocatorBytes: [0x${base.toString(16)}, 0x${limit.toString(16)}) must be whole pages of RAM above 1 MiB (RAM is ${this.ramBytes} bytes)`,
      );
    }
    return { base, limit };
  }

  private pageAllocator(base: number, limit: number): V86DriverPlatform["allocator"] {
    return rangePageAllocator("V86DriverPlatform", base, limit, (address, bytes) => {
      for (let at = address; at < address + bytes; at += 4) this.cpu.write32(at, 0);
      this.stored(address, bytes);
    });
  }
}
