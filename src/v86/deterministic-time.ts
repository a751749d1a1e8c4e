/**
 * Deterministic runs: every clock v86 gives the guest reads a VirtualClock (virtual-clock.ts),
 * and nothing the guest sees depends on when the host got round to something.
 *
 * v86 0.5.462 reads time in these places, all driven here:
 * - its wasm imports `microtick` (the main loop's slicing and the `now` it passes to the timers,
 *   the TSC read by RDTSC, the local APIC timer's count and deadlines, the HLT wake-up) and
 *   `get_rand_int` (RDRAND, RDSEED): both replaced when the module is instantiated;
 * - its JS devices call the main class's static `microtick` (PIT counts and port 0x61, the ACPI
 *   PM timer, the RTC's update-in-progress bit): replaced once per process by a dispatcher that
 *   answers with the clock of the deterministic machine whose tick is running (host time otherwise);
 * - the RTC and the VMware backdoor's time call read the host's `Date`: they see a `Date` that
 *   shows the clock's date (UTC) while they run; the RTC starts at `rtcStartMs`;
 * - the JIT hands generated code to an asynchronous compile, so when compiled code starts to run
 *   depended on the host: here the code is compiled and installed at the end of the tick that
 *   generated it, i.e. at a point fixed in guest instructions;
 * - a halted CPU waited on a host timer: here guest time jumps to the next timer and the next
 *   tick follows at once (the machine's tick wrapper calls `afterTick`).
 */
import {
  JIT_TABLE_OFFSET,
  type V86Acpi,
  type V86Cpu,
  type V86Emulator,
  type V86MainClass,
  type V86Pit,
  type V86Rtc,
} from "./internals.ts";
import type { VirtualClock } from "./virtual-clock.ts";
import { LiveBytes } from "./wasm-views.ts";

/** The smallest jump of a halted CPU: a timer due "now" by rounding still fires (1 us > one PIT tick). */
export const MIN_IDLE_STEP_MS = 0.001;

const RTC_DATA_PORT = 0x71;
const VMWARE_BACKDOOR_PORT = 0x5658;

/** The wasm imports v86 passes its module, with the clock's time and random numbers. */
export function deterministicImports(imports: WebAssembly.Imports, clock: VirtualClock): WebAssembly.Imports {
  const env = imports.env as Record<string, unknown> | undefined;
  if (!env || typeof env.microtick !== "function" || typeof env.get_rand_int !== "function") {
    throw new Error("v86 did not pass the wasm imports env.microtick and env.get_rand_int (expected v86 0.5.462)");
  }
  return { ...imports, env: { ...env, microtick: () => clock.now(), get_rand_int: () => clock.nextRandom() } };
}

/** The clock of the deterministic machine running a tick now (JS is single-threaded: one at a time). */
let runningClock: VirtualClock | undefined;
const DISPATCHER = Symbol.for("v86-vtd.microtick-dispatcher");

function installMicrotickDispatcher(mainClass: V86MainClass & { [DISPATCHER]?: true }): void {
  if (mainClass[DISPATCHER]) return;
  const host = mainClass.microtick;
  if (typeof host !== "function") throw new Error("v86 internals: the main class has no static microtick (expected v86 0.5.462)");
  mainClass.microtick = () => (runningClock ? runningClock.now() : host());
  mainClass[DISPATCHER] = true;
}

/** A `Date` showing the clock's date, in UTC, for code that asks the host for the time. */
function virtualDateClass(clock: VirtualClock): DateConstructor {
  const HostDate = Date;
  class VirtualDate extends HostDate {
    constructor(...args: unknown[]) {
      super(...((args.length === 0 ? [clock.dateNow()] : args) as [number]));
    }
    static override now(): number {
      return clock.dateNow();
    }
    override getTimezoneOffset(): number {
      return 0;
    }
  }
  return VirtualDate as unknown as DateConstructor;
}

interface PendingCode {
  index: number;
  start: number;
  stateFlags: number;
  bytes: Uint8Array<ArrayBuffer>;
}

export class DeterministicTime {
  private readonly inHlt: LiveBytes;
  private readonly pendingCode: PendingCode[] = [];
  private readonly VirtualDate: DateConstructor;
  private previousClock: VirtualClock | undefined;
  /** JIT modules compiled at the end of a tick. */
  compiledModules = 0;

  constructor(
    private readonly cpu: V86Cpu,
    emulator: V86Emulator,
    readonly clock: VirtualClock,
  ) {
    this.inHlt = new LiveBytes(cpu.wasm_memory, cpu.in_hlt.byteOffset, 1);
    this.VirtualDate = virtualDateClass(clock);
    clock.attach(cpu);
    installMicrotickDispatcher(Object.getPrototypeOf(emulator.v86).constructor as V86MainClass);
    this.rebaseDevices();
    this.driveRtc();
    this.deferJitCode();
  }

  /** Called before each of v86's ticks: the JS devices read this clock until `afterTick`. */
  beforeTick(): void {
    this.previousClock = runningClock;
    runningClock = this.clock;
  }

  /**
   * The delay to schedule the next tick with, given the one v86 asked for at the end of a tick (ms
   * until its next timer when the CPU is halted, else 0): always 0. If the CPU is halted waiting
   * for that timer, guest time jumps to it first (not when `stopped`: the guest has exited).
   */
  nextTickDelay(requestedMs: number, stopped: boolean): number {
    if (!stopped && this.inHlt.bytes[0] !== 0) this.clock.skip(Math.max(Number.isFinite(requestedMs) ? requestedMs : 0, MIN_IDLE_STEP_MS));
    return 0;
  }

  /** Called after each tick: installs the JIT code generated in it. */
  afterTick(): void {
    runningClock = this.previousClock;
    this.previousClock = undefined;
    this.installJitCode();
  }

  /** Runs `f` with the host's `Date` replaced by one showing the clock's date. */
  private withVirtualDate<T>(f: () => T): T {
    const host = globalThis.Date;
    globalThis.Date = this.VirtualDate;
    try {
      return f();
    } finally {
      globalThis.Date = host;
    }
  }

  /** v86 built its devices before the clock existed: bring what they remember of the host's time onto the clock. */
  private rebaseDevices(): void {
    const devices = this.cpu.devices;
    const acpi = devices.acpi as V86Acpi | undefined;
    if (acpi) {
      if (typeof acpi.get_timer !== "function") throw new Error("v86 internals: ACPI PM timer without get_timer (expected v86 0.5.462)");
      acpi.timer_last_value = 0;
      acpi.timer_imprecision_offset = 0;
      acpi.last_timer = acpi.get_timer(this.clock.now());
    }
    const pit = devices.pit as V86Pit | undefined;
    if (!pit || !(pit.counter_start_time instanceof Float64Array)) throw new Error("v86 internals: cpu.devices.pit.counter_start_time is missing (expected v86 0.5.462)");
    // No guest has run: no count has started. (Should one have, it starts again now.)
    for (let channel = 0; channel < 3; channel++) if (pit.counter_enabled[channel]) pit.counter_start_time[channel] = this.clock.now();
  }

  private driveRtc(): void {
    const rtc = this.cpu.devices.rtc as V86Rtc | undefined;
    if (!rtc || typeof rtc.timer !== "function") throw new Error("v86 internals: cpu.devices.rtc.timer() is missing (expected v86 0.5.462)");
    rtc.rtc_time = this.clock.dateNow();
    rtc.last_update = this.clock.dateNow();
    const timer = rtc.timer.bind(rtc);
    rtc.timer = (now, legacy) => this.withVirtualDate(() => timer(now, legacy));
    const ports = this.cpu.io.ports;
    const cmos = ports[RTC_DATA_PORT];
    if (!cmos) throw new Error("v86 internals: no handler for port 0x71 (expected v86 0.5.462)");
    const [read8, write8] = [cmos.read8, cmos.write8];
    cmos.read8 = (port) => this.withVirtualDate(() => read8.call(cmos.device, port));
    cmos.write8 = (value) => this.withVirtualDate(() => write8.call(cmos.device, value));
    const backdoor = ports[VMWARE_BACKDOOR_PORT];
    if (backdoor) {
      const read32 = backdoor.read32;
      backdoor.read32 = (port) => this.withVirtualDate(() => read32.call(backdoor.device, port));
    }
  }

  /** JIT code is handed over at the end of the tick that generated it, not when the host has compiled it. */
  private deferJitCode(): void {
    const cpu = this.cpu;
    if (typeof cpu.codegen_finalize_finished !== "function" || !(cpu.wm?.wasm_table instanceof WebAssembly.Table)) {
      throw new Error("v86 internals: cpu.codegen_finalize_finished() or cpu.wm.wasm_table is missing (expected v86 0.5.462)");
    }
    cpu.codegen_finalize = (index, start, stateFlags, pointer, length) => {
      // The generated bytes live in a buffer v86 reuses: copy them now.
      const bytes = new Uint8Array(cpu.wasm_memory.buffer, pointer >>> 0, length >>> 0).slice();
      this.pendingCode.push({ index, start, stateFlags, bytes });
    };
  }

  private installJitCode(): void {
    const cpu = this.cpu;
    for (const code of this.pendingCode.splice(0)) {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(code.bytes), { e: cpu.jit_imports as WebAssembly.ModuleImports });
      cpu.wm.wasm_table.set(code.index + JIT_TABLE_OFFSET, instance.exports.f as WebAssembly.ExportValue);
      cpu.codegen_finalize_finished(code.index, code.start, code.stateFlags);
      this.compiledModules++;
    }
  }
}
