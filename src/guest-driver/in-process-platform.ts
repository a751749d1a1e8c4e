/**
 * The in-process machine: a GuestRam, a VtdDevice mapped at `unitBase`, a CPU cache, a page
 * allocator, an MSI controller and a clock that drives `device.advanceTime`. Direct calls, no
 * emulator: fast enough for tests and benchmarks.
 *
 * The CPU cache (cpu-cache-model.ts) makes a missing CLFLUSH visible when the unit is not
 * coherent (ECAP.C = 0).
 */
import { buildDmar, type PciEndpoint } from "../acpi/dmar.ts";
import { PAGE_SIZE } from "../spec/entries.ts";
import { MSI_ADDRESS_BASE, VTD_REGISTER_PAGE_SIZE, VTD_UNIT_BASE } from "../spec/platform.ts";
import { Iqa, Reg } from "../spec/registers.ts";
import { GuestRam } from "../vtd-device/memory/guest-memory.ts";
import { CpuCacheModel, LINE } from "./cpu-cache-model.ts";
import { cpuPhysicalMemory, type CpuAccess } from "./cpu-memory.ts";
import { rangePageAllocator, type RangePageAllocator } from "./page-allocator.ts";
import { VtdDevice } from "../vtd-device/device.ts";
import type { VtdOptions } from "../vtd-device/options.ts";
import type { Clock, InterruptController, Mmio, MsiMessage, PhysicalMemory, Platform, RecordedCpuCache } from "./platform.ts";
import { TimerQueue } from "./timer-queue.ts";

/** Where QEMU and the v86 platform put the unit. */
export const IN_PROCESS_UNIT_BASE = VTD_UNIT_BASE;
const FIRST_VECTOR = 0x30;

export interface InProcessOptions {
  /** Guest RAM in bytes. Default 64 MiB. */
  ramBytes?: number;
  /** The unit's configuration (memory and onInterrupt are the platform's). */
  vtd?: Omit<VtdOptions, "memory" | "onInterrupt">;
  unitBase?: number;
  /** 32: a 64-bit register access is two 32-bit accesses, low first (v86, a 32-bit guest). Default 64. */
  registerWidth?: 32 | 64;
  /** The allocator hands out pages from [allocatorBase, allocatorBase + allocatorBytes). Default 1 MiB .. RAM/2. */
  allocatorBase?: number;
  allocatorBytes?: number;
  /** Devices listed in the DMAR table's DRHD scope. Default 00:04.0 (edu's slot on the v86 platform). */
  deviceScopes?: PciEndpoint[];
  /** Test hook: rewrites what a register read returns (offset from the unit's base). */
  readFilter?: (offset: number, size: 4 | 8, value: bigint) => bigint;
  /** Test hook: called after every CPU store to memory and every register write. */
  afterWrite?: (target: "memory" | "register", address: number) => void;
}

export class InProcessPlatform implements Platform {
  readonly ram: GuestRam;
  readonly device: VtdDevice;
  readonly unitBase: number;
  readonly coherent: boolean;
  readonly memory: PhysicalMemory;
  readonly mmio: Mmio;
  readonly allocator: RangePageAllocator;
  readonly cache: RecordedCpuCache & {
    /** Every line address ever flushed. */
    readonly flushedLines: ReadonlySet<number>;
  };
  readonly interrupts: InterruptController;
  readonly clock: Clock & {
    /** The outside world's time passing: timers fire and interrupts are delivered on the way. */
    advance(ms: number): void;
  };
  /** MSIs sent by the unit that matched no allocated vector. */
  strayInterrupts = 0;
  afterWrite: InProcessOptions["afterWrite"];

  private readonly options: InProcessOptions;
  private readonly bytes: Uint8Array;
  private readonly cpuCache: CpuCacheModel;
  /** IQA as last written: the unit snoops its queue fetches. */
  private iqaLow = 0;
  private iqaHigh = 0;
  private time = 0;
  private readonly timers = new TimerQueue();
  private readonly handlers = new Map<number, () => void>();
  private nextVector = FIRST_VECTOR;
  private readonly pendingVectors: number[] = [];
  private drainScheduled = false;
  private draining = false;

  constructor(options: InProcessOptions = {}) {
    this.options = options;
    this.ram = new GuestRam(options.ramBytes ?? 64 << 20);
    this.bytes = this.ram.direct;
    this.unitBase = options.unitBase ?? IN_PROCESS_UNIT_BASE;
    this.coherent = options.vtd?.coherent ?? false;
    this.afterWrite = options.afterWrite;
    this.cpuCache = new CpuCacheModel(this.bytes, this.coherent);
    this.device = new VtdDevice({
      ...options.vtd,
      ...withCpuView(options.vtd?.checker, this.cpuCache),
      memory: this.cpuCache.unitView(),
      onInterrupt: (address, data) => this.receiveMsi(address, data),
    });
    this.memory = this.cpuMemory();
    this.mmio = this.unitMmio(options.registerWidth ?? 64);
    this.allocator = this.pageAllocator();
    const model = this.cpuCache;
    this.cache = {
      lineSize: LINE,
      flush: (address, length) => model.flush(address, length),
      get flushes() {
        return model.flushes;
      },
      dirtyLines: () => model.dirtyLines(),
      get flushedLines() {
        return model.flushedLines;
      },
    };
    this.interrupts = {
      allocateMsi: (_name, handler): MsiMessage => {
        const vector = this.nextVector++;
        this.handlers.set(vector, handler);
        return { address: MSI_ADDRESS_BASE, upperAddress: 0, data: vector };
      },
    };
    this.clock = {
      now: () => this.time,
      spin: (ms) => this.passTime(ms, false),
      after: (ms, callback) => this.timers.after(this.time, ms, callback),
      advance: (ms) => this.passTime(ms, true),
    };
  }

  acpiTable(signature: string): Uint8Array | undefined {
    if (signature !== "DMAR") return undefined;
    return buildDmar({
      hostAddressWidth: this.device.options.awBits,
      unitBase: this.unitBase,
      deviceScopes: this.options.deviceScopes ?? [{ bus: 0, dev: 4, fn: 0 }],
    });
  }

  /** Lets queued interrupts and due timers run (what returning to the event loop does). */
  deliver(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (;;) {
        const vector = this.pendingVectors.shift();
        if (vector !== undefined) {
          this.handlers.get(vector)?.();
          continue;
        }
        const timer = this.timers.takeDue(this.time);
        if (!timer) break;
        timer();
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * Advances the clock in `stepMs` steps (delivering interrupts and timers) until `promise`
   * settles; rejects if it has not after `limitMs`. For tests of asynchronous waits.
   */
  async settle<T>(promise: Promise<T>, stepMs = 1, limitMs = 600_000): Promise<T> {
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    watched.catch(() => {});
    const start = this.time;
    for (;;) {
      for (let i = 0; i < 4; i++) await Promise.resolve();
      if (done) return watched;
      if (this.time - start >= limitMs) throw new Error(`InProcessPlatform.settle: not settled after ${limitMs} ms of platform time`);
      this.passTime(stepMs, true);
    }
  }

  // ---- time and interrupts ----

  private passTime(ms: number, deliver: boolean): void {
    if (!(ms > 0)) {
      if (deliver) this.deliver();
      return;
    }
    const target = this.time + ms;
    if (deliver) {
      this.deliver();
      for (let at = this.timers.nextDue; at !== undefined && at <= target; at = this.timers.nextDue) {
        this.moveTo(Math.max(this.time, at));
        this.deliver();
      }
    }
    this.moveTo(target);
    if (deliver) this.deliver();
    else this.scheduleDrain();
  }

  private moveTo(time: number): void {
    if (time > this.time) {
      const delta = time - this.time;
      this.time = time;
      this.device.advanceTime(delta);
    }
  }

  private receiveMsi(address: bigint, data: number): void {
    if ((address & 0xfff0_0000n) !== BigInt(MSI_ADDRESS_BASE) || !this.handlers.has(data & 0xff)) {
      this.strayInterrupts++;
      return;
    }
    this.pendingVectors.push(data & 0xff);
    this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    if (this.pendingVectors.length === 0 && !this.timers.dueBy(this.time)) return;
    this.drainScheduled = true;
    queueMicrotask(() => {
      this.drainScheduled = false;
      this.deliver();
    });
  }

  // ---- the CPU's view of memory, through its cache ----

  private checkRam(address: number, length: number, alignment: number): void {
    if (!Number.isInteger(address) || address < 0 || address + length > this.bytes.length) {
      throw new RangeError(`InProcessPlatform: CPU access at 0x${address.toString(16)} (+${length}) is outside RAM`);
    }
    if (address % alignment !== 0) throw new RangeError(`InProcessPlatform: unaligned ${length}-byte access at 0x${address.toString(16)}`);
  }

  private cpuMemory(): PhysicalMemory {
    const cache = this.cpuCache;
    const cpu: CpuAccess = {
      read8: (address) => cache.read8(address),
      read32: (address) => cache.read32(address),
      write8: (address, value) => cache.write8(address, value),
      write32: (address, value) => cache.write32(address, value >>> 0),
      write64: (address, value) => {
        // Aligned 8 bytes never straddle a line: both halves land together, one store.
        cache.write32(address, Number(value & 0xffff_ffffn));
        cache.write32(address + 4, Number((value >> 32n) & 0xffff_ffffn));
      },
    };
    return cpuPhysicalMemory(cpu, (address, length, alignment) => this.checkRam(address, length, alignment), (address) => this.afterWrite?.("memory", address));
  }

  // ---- the unit's registers ----

  private unitMmio(width: 32 | 64): Mmio {
    const filter = this.options.readFilter;
    const locate = (address: number, size: number): number => {
      const offset = address - this.unitBase;
      if (offset < 0 || offset + size > VTD_REGISTER_PAGE_SIZE) return -1;
      return offset + size <= this.device.registerWindowSize ? offset : -2;
    };
    const read = (address: number, size: 4 | 8): bigint => {
      const offset = locate(address, size);
      if (offset === -1) return size === 4 ? 0xffff_ffffn : 0xffff_ffff_ffff_ffffn;
      if (offset === -2) return 0n;
      const value = this.device.readRegister(offset, size);
      return filter ? filter(offset, size, value) : value;
    };
    const write = (address: number, size: 4 | 8, value: bigint): void => {
      const offset = locate(address, size);
      if (offset < 0) return;
      this.noteQueueAddress(offset, size, value);
      this.device.writeRegister(offset, size, value);
      this.afterWrite?.("register", address);
    };
    return {
      read32: (address) => Number(read(address, 4)),
      read64: (address) => width === 64 ? read(address, 8) : read(address, 4) | (read(address + 4, 4) << 32n),
      write32: (address, value) => write(address, 4, BigInt(value >>> 0)),
      write64: (address, value) => {
        if (width === 64) return write(address, 8, BigInt.asUintN(64, value));
        write(address, 4, value & 0xffff_ffffn);
        write(address + 4, 4, (value >> 32n) & 0xffff_ffffn);
      },
    };
  }

  /** Remembers the queue's range from IQA writes: the unit snoops its fetches there. */
  private noteQueueAddress(offset: number, size: 4 | 8, value: bigint): void {
    if (offset === Reg.IQA) {
      this.iqaLow = Number(value & 0xffff_ffffn);
      if (size === 8) this.iqaHigh = Number(value >> 32n);
    } else if (offset === Reg.IQA + 4 && size === 4) {
      this.iqaHigh = Number(value);
    } else {
      return;
    }
    const iqa = (BigInt(this.iqaHigh) << 32n) | BigInt(this.iqaLow);
    const base = Number(iqa & Iqa.IQA);
    this.cpuCache.setSnoopedRange(base, base + 2 ** Number(iqa & 7n) * PAGE_SIZE);
  }

  // ---- pages for the driver ----

  private pageAllocator(): InProcessPlatform["allocator"] {
    const base = this.options.allocatorBase ?? 0x10_0000;
    const limit = base + (this.options.allocatorBytes ?? Math.max(PAGE_SIZE, Math.floor(this.bytes.length / 2 / PAGE_SIZE) * PAGE_SIZE - base));
    if (base % PAGE_SIZE !== 0 || limit > this.bytes.length || limit <= base) throw new RangeError("InProcessPlatform: allocator range outside RAM or unaligned");
    return rangePageAllocator("InProcessPlatform", base, limit, (address, bytes) => this.cpuCache.zero(address, bytes));
  }
}

/**
 * The strict checker, when asked for, learns the CPU's view of memory from the CPU cache model,
 * so it can report table stores the driver did not flush (ECAP.C = 0). A view the embedder gave wins.
 */
function withCpuView(checker: VtdOptions["checker"], cache: CpuCacheModel): Pick<VtdOptions, "checker"> {
  if (!checker) return {};
  const cpuView = { read32: (address: number) => cache.read32(address), lineSize: LINE };
  if (checker === true) return { checker: { cpuView } };
  if (typeof checker !== "object" || checker.cpuView !== undefined) return { checker };
  return { checker: { ...checker, cpuView } };
}
