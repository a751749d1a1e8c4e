/**
 * A v86 machine for this project: created without a BIOS for multiboot guests (or with one,
 * given its bytes), ACPI on (LAPIC/IOAPIC), CLFLUSH enabled, safe points installed, port 0xF4
 * as exit port, serial output as text. Runs until the guest exits, halts for good, crashes
 * v86, or a timeout; stops cleanly and at once. No node: imports here (usable from a page):
 * the caller passes the patched, compiled v86 module (v86-wasm.node.ts in Node).
 *
 * With `deterministic`, guest time follows guest instructions (virtual-clock.ts, and
 * deterministic-time.ts for what that drives in v86): the same guest gives the same run.
 *
 * `Machine.around(emulator)` builds the same host side around an emulator someone else created
 * (with `wasm_fn: vtdWasm(...)`): what attachVtd does for a user's own V86.
 */
import { V86 } from "v86";
import { wasmHooksOf, vtdWasm, type WasmHooks } from "./attach-wasm.ts";
import type { ClflushHook } from "./clflush.ts";
import { installExitPort } from "./exit-port.ts";
import { assertInternals, type V86Cpu, type V86Emulator } from "./internals.ts";
import { DeterministicTime } from "./deterministic-time.ts";
import { SafePoints } from "./safe-point.ts";
import { V86GuestMemory } from "./v86-guest-memory.ts";
import { physicalAddress } from "./linear-address.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import type { DeterministicOptions, VirtualClock, VirtualClockState } from "./virtual-clock.ts";

export interface MachineOptions {
  /** v86.wasm with the CLFLUSH patch (patchClflush), compiled. */
  wasmModule: WebAssembly.Module;
  /** RAM in bytes (v86 rounds up to 128 KiB). Default 64 MiB. */
  memoryBytes?: number;
  /** A multiboot image, loaded by v86 before the guest runs (no BIOS). */
  multiboot?: Uint8Array;
  cmdline?: string;
  /** SeaBIOS and VGA BIOS images for BIOS boots. */
  bios?: Uint8Array;
  vgaBios?: Uint8Array;
  /**
   * A Linux bzImage, booted by SeaBIOS through v86's option ROM (needs `bios`), with `cmdline`.
   * v86 loads `initrd` at 64 MiB: memoryBytes must leave room above it.
   */
  bzImage?: Uint8Array;
  initrd?: Uint8Array;
  /** Run v86's interpreter only. Default false (JIT on). */
  disableJit?: boolean;
  /**
   * Guest time follows guest instructions, not the host (`true`, or options: ns per instruction,
   * the RTC's start date, the RDRAND seed): the TSC, PIT, local APIC timer, ACPI PM timer, RTC,
   * the unit's clock and our devices' delays all read it, and a halted CPU jumps to its next
   * timer. Then the same guest with the same options runs the same way, host load or not.
   * Only the `run` timeout stays in host time. Default false (host time, as v86 does).
   */
  deterministic?: boolean | DeterministicOptions;
}

/** exit port written; timeout; HLT with interrupts off; `requestStop` called by the host. */
export type StopReason = "exit" | "timeout" | "halted" | "requested";

export interface MachineOutcome {
  reason: StopReason;
  exitCode: number | null;
  /** Host time the run took. */
  elapsedMs: number;
  instructions: number;
  /** Guest time at the end, in ms since power-on (the virtual clock when deterministic). */
  guestMs: number;
}

export const DEFAULT_MEMORY_BYTES = 64 << 20;
export const MAX_MEMORY_BYTES = 2048 * 2 ** 20;
/** Where v86 puts an initrd (its bzImage loader, fixed). */
export const INITRD_ADDRESS = 64 << 20;

function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer; // own copy: Node's small Buffers share a pool
}

/** What a machine's run counters hold, for save and restore (attach-state.ts). */
export interface MachineState {
  instructions: number;
  /** v86's clock at the last safe point (only with a virtual clock, where it means the same after a restore). */
  lastSafePoint?: number;
  clock?: VirtualClockState;
}

/** The Machine built around each emulator, so that attaching finds the one already there. */
const machines = new WeakMap<object, Machine>();

export class Machine {
  readonly cpu: V86Cpu;
  readonly safePoints: SafePoints;
  readonly memory: V86GuestMemory;
  /** The clocks' source in a deterministic machine, else undefined. */
  readonly clock: VirtualClock | undefined;
  exitCode: number | null = null;
  private readonly decoder = new TextDecoder();
  private readonly serialListeners: ((text: string) => void)[] = [];
  private finish: ((reason: StopReason) => void) | undefined;
  private fail: ((error: Error) => void) | undefined;
  private crashed: Error | undefined;
  private stopped = false;
  private instructionTotal = 0;
  private lastCounter = 0;
  private readonly time: DeterministicTime | undefined;
  private inTick = false;
  /** v86's clock (the host's performance.now) when the machine was made. */
  private readonly hostClockAtStart = performance.now();

  readonly clflush: ClflushHook;
  private readonly listeners: [string, (argument: unknown) => void][] = [];
  private readonly tickEndListeners: (() => void)[] = [];

  private constructor(
    readonly emulator: V86Emulator,
    hooks: WasmHooks,
    exitPort: boolean,
  ) {
    this.cpu = assertInternals(emulator);
    this.clflush = hooks.clflush;
    const clock = hooks.clock;
    this.clflush.installJit(this.cpu);
    this.memory = new V86GuestMemory(this.cpu);
    const ram = new MemoryAccess(this.memory);
    this.clflush.translate = (linear) => physicalAddress(this.cpu, ram, linear);
    this.clock = clock;
    this.time = clock ? new DeterministicTime(this.cpu, emulator, clock) : undefined;
    this.safePoints = clock ? new SafePoints(this.cpu, () => clock.now()) : new SafePoints(this.cpu);
    this.safePoints.onTick(() => this.countInstructions());
    if (exitPort) installExitPort(this.cpu.io, (code) => this.guestExited(code));
    this.listen("serial0-output-byte", (byte) => {
      const text = this.decoder.decode(new Uint8Array([byte as number]), { stream: true });
      if (text) for (const listener of this.serialListeners) listener(text);
    });
    this.listen("cpu-event-halt", () => this.finish?.("halted"));
    this.catchWasmCrashes();
    machines.set(emulator, this);
  }

  /**
   * The machine around an emulator created elsewhere with `wasm_fn: vtdWasm(...)` (the one
   * already built if there is one). Needs v86's internals (assertInternals) and refuses an
   * emulator made without vtdWasm, naming what to pass. No exit port: port 0xF4 stays v86's.
   */
  /** True when a Machine was built around this emulator (Machine.create, or an earlier attach). */
  static existsAround(emulator: V86Emulator): boolean {
    return machines.has(emulator);
  }

  static around(emulator: V86Emulator): Machine {
    const existing = machines.get(emulator);
    if (existing) return existing;
    const cpu = assertInternals(emulator);
    const hooks = wasmHooksOf(cpu.wasm_memory);
    if (!hooks) {
      throw new Error(
        "attachVtd: this V86 was not created with the unit's wasm: pass `wasm_fn: vtdWasm(module)` to new V86(...) " +
          "(module from compilePatchedV86(bytes of v86.wasm), or patchedV86Module() from v86-vtd/v86/node): " +
          "it adds CLFLUSH, which guest IOMMU drivers execute",
      );
    }
    return new Machine(emulator, hooks, false);
  }

  /** Removes this machine's listeners from the emulator (detach; v86's functions are put back by the caller). */
  dispose(): void {
    for (const [event, listener] of this.listeners.splice(0)) this.emulator.remove_listener(event, listener);
    machines.delete(this.emulator);
  }

  /** The run counters (instructions, the virtual clock) to carry across save and restore. */
  saveState(): MachineState {
    const { clock } = this;
    const lastSafePoint = this.safePoints.lastSafePoint;
    return { instructions: this.instructions, ...(clock ? { clock: clock.saveState(), ...(lastSafePoint !== undefined ? { lastSafePoint } : {}) } : {}) };
  }

  /** Continues from saved counters: after v86 restored its state, the instruction count and clock go on from theirs. */
  restoreState(state: MachineState): void {
    this.instructionTotal = state.instructions;
    this.lastCounter = this.cpu.instruction_counter[0]! >>> 0;
    if (this.clock && state.clock) this.clock.restoreState(state.clock);
    this.safePoints.rebase(this.clock ? state.lastSafePoint : undefined);
  }

  private listen(event: string, listener: (argument: unknown) => void): void {
    this.emulator.add_listener(event, listener);
    this.listeners.push([event, listener]);
  }

  static async create(options: MachineOptions): Promise<Machine> {
    const memoryBytes = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    if (!Number.isInteger(memoryBytes) || memoryBytes < 2 << 20 || memoryBytes > MAX_MEMORY_BYTES) {
      throw new RangeError(`machine memory: expected 2 MiB..2 GiB, got ${memoryBytes} bytes`);
    }
    const settings: Record<string, unknown> = {
      wasm_fn: vtdWasm(options.wasmModule, { deterministic: options.deterministic }),
      memory_size: memoryBytes,
      vga_memory_size: 2 << 20,
      autostart: false,
      acpi: true,
      disable_keyboard: true,
      disable_mouse: true,
      disable_speaker: true,
      net_device: { type: "none" },
      disable_jit: options.disableJit ?? false,
    };
    if (options.multiboot) settings.multiboot = { buffer: arrayBuffer(options.multiboot) };
    if (options.cmdline !== undefined) settings.cmdline = options.cmdline;
    if (options.bios) settings.bios = { buffer: arrayBuffer(options.bios) };
    if (options.vgaBios) settings.vga_bios = { buffer: arrayBuffer(options.vgaBios) };
    if (options.bzImage) {
      if (!options.bios) throw new Error("machine: a bzImage boots through a BIOS (option bios)");
      settings.bzimage = { buffer: arrayBuffer(options.bzImage) };
    }
    if (options.initrd) {
      if (!options.bzImage) throw new Error("machine: option initrd needs option bzImage");
      if (memoryBytes < INITRD_ADDRESS + options.initrd.length) {
        throw new RangeError(`machine memory: ${memoryBytes} bytes do not hold the initrd v86 loads at 64 MiB (${options.initrd.length} bytes)`);
      }
      settings.initrd = { buffer: arrayBuffer(options.initrd) };
    }
    const emulator = new V86(settings as ConstructorParameters<typeof V86>[0]) as unknown as V86Emulator;
    await new Promise<void>((resolve) => emulator.add_listener("emulator-loaded", () => resolve()));
    const hooks = wasmHooksOf(assertInternals(emulator).wasm_memory);
    if (!hooks) throw new Error("machine: v86 did not instantiate its module through wasm_fn");
    return new Machine(emulator, hooks, true);
  }

  /**
   * Called after each of v86's ticks, between two slices of guest code: where the machine's state
   * is whole (v86's save_state may be called from here).
   */
  onTickEnd(listener: () => void): void {
    this.tickEndListeners.push(listener);
  }

  /** Receives the guest's serial output (COM1) as text. */
  onSerial(listener: (text: string) => void): void {
    this.serialListeners.push(listener);
  }

  /** Guest instructions executed so far (v86's 32-bit counter, unwrapped). */
  get instructions(): number {
    this.countInstructions();
    return this.instructionTotal;
  }

  /** Guest time since power-on in ms: the virtual clock when deterministic, else v86's (host) clock at the last safe point. */
  get guestMs(): number {
    return this.clock ? this.clock.now() : Math.max(0, this.safePoints.now - this.hostClockAtStart);
  }

  /**
   * Runs the guest until it writes the exit port, halts with interrupts off, or `timeoutMs`
   * passes; then stops the machine. Rejects if v86 itself fails (e.g. a guest exception before
   * it has an IDT ends v86's wasm with `unreachable`).
   */
  async run(timeoutMs: number): Promise<MachineOutcome> {
    if (this.stopped) throw new Error("machine: already stopped");
    const started = performance.now();
    this.lastCounter = this.cpu.instruction_counter[0]! >>> 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const reason = await new Promise<StopReason>((resolve, reject) => {
        this.finish = resolve;
        this.fail = reject;
        if (this.exitCode !== null) resolve("exit");
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
        void this.emulator.run();
      });
      const elapsedMs = performance.now() - started;
      await this.stop();
      return { reason, exitCode: this.exitCode, elapsedMs, instructions: this.instructions, guestMs: this.guestMs };
    } catch (error) {
      await this.stop();
      throw error;
    } finally {
      clearTimeout(timer);
      this.finish = undefined;
      this.fail = undefined;
    }
  }

  /** Ends a `run` in progress (e.g. the host saw a kernel panic on the console): it resolves with "requested". */
  requestStop(): void {
    this.safePoints.freeze();
    this.finish?.("requested");
  }

  /** Stops the CPU now (not at v86's next tick) and frees the emulator. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.countInstructions();
    this.safePoints.freeze();
    const v86 = this.emulator.v86;
    if (this.crashed || !v86.running) {
      v86.running = false;
      return;
    }
    const stopped = this.emulator.stop();
    v86.next_tick(0);
    await stopped;
    await this.emulator.destroy();
  }

  private guestExited(code: number): void {
    if (this.exitCode !== null) return;
    this.exitCode = code;
    this.safePoints.freeze();
    this.finish?.("exit");
  }

  private countInstructions(): void {
    const counter = this.cpu.instruction_counter[0]! >>> 0;
    this.instructionTotal += (counter - this.lastCounter) >>> 0;
    this.lastCounter = counter;
  }

  /**
   * v86 runs the CPU in ticks from setImmediate (or setTimeout while halted): a wasm trap there
   * would kill the process. When deterministic, each tick reads the virtual clock and the next
   * one follows at once (a halted CPU's wait is skipped on the clock instead).
   */
  private catchWasmCrashes(): void {
    const v86 = this.emulator.v86;
    const doTick = v86.do_tick.bind(v86);
    const time = this.time;
    if (time) {
      const nextTick = v86.next_tick.bind(v86);
      v86.next_tick = (delayMs: number) => nextTick(this.inTick ? time.nextTickDelay(delayMs, this.safePoints.isFrozen) : delayMs);
    }
    v86.do_tick = () => {
      if (this.crashed) return;
      this.safePoints.inGuestSlice = true;
      this.inTick = true;
      time?.beforeTick();
      try {
        doTick();
      } catch (error) {
        const eip = this.cpu.previous_ip[0]! >>> 0;
        this.crashed = new Error(
          `v86 stopped: ${error instanceof Error ? error.message : String(error)} near EIP 0x${eip.toString(16)}. ` +
            "A guest exception before the guest has set up an IDT (or a triple fault) ends v86's wasm this way.",
          { cause: error },
        );
        v86.running = false;
        if (this.fail) this.fail(this.crashed);
      } finally {
        this.safePoints.inGuestSlice = false;
        this.inTick = false;
        time?.afterTick();
      }
      if (!this.crashed) for (const listener of this.tickEndListeners) listener();
    };
  }
}
