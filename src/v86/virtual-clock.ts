/**
 * Guest time that follows guest instructions, not the host: `now()` is the number of instructions
 * the CPU has executed times a fixed duration, plus the time skipped while the CPU was halted
 * (a halted CPU jumps to its next timer at once, as it would have waited for it). Two runs of the
 * same guest therefore read the same times at the same instructions, whatever else the host does.
 *
 * The clock also gives the seeded random numbers the guest's RDRAND/RDSEED read, and the date the
 * guest's RTC shows. No node: imports (usable from a page).
 */
import type { V86Cpu } from "./internals.ts";
import { LiveBytes } from "./wasm-views.ts";

export interface DeterministicOptions {
  /** Guest time per executed instruction, in ns (0 < n <= 1e6). Default 10: a 100 MIPS machine. */
  nsPerInstruction?: number;
  /** The RTC's date and time at power-on, in ms since 1970-01-01 UTC. Default 2024-01-01T00:00:00Z. */
  rtcStartMs?: number;
  /** Seed of the numbers RDRAND and RDSEED return (an integer). Default 1. */
  seed?: number;
}

export const DEFAULT_NS_PER_INSTRUCTION = 10;
export const DEFAULT_RTC_START_MS = Date.UTC(2024, 0, 1);
export const DEFAULT_RANDOM_SEED = 1;

export type ResolvedDeterministicOptions = Required<DeterministicOptions>;

/** Where a clock stands, for save and restore: what it has counted and its random state. */
export interface VirtualClockState {
  nsPerInstruction: number;
  rtcStartMs: number;
  instructions: number;
  idleMs: number;
  randomState: number;
}

/** `true` or an options object: the resolved options (every bad value an error naming it); `false`/undefined: undefined. */
export function resolveDeterministic(option: boolean | DeterministicOptions | undefined): ResolvedDeterministicOptions | undefined {
  if (option === undefined || option === false) return undefined;
  const given: DeterministicOptions = option === true ? {} : option;
  if (typeof given !== "object" || given === null) throw new TypeError(`option deterministic: expected true, false or an object, got ${String(option)}`);
  const ns = given.nsPerInstruction ?? DEFAULT_NS_PER_INSTRUCTION;
  if (typeof ns !== "number" || !(ns > 0) || ns > 1e6) {
    throw new RangeError(`option deterministic.nsPerInstruction: expected a number of ns in (0, 1e6], got ${String(ns)}`);
  }
  const rtcStartMs = given.rtcStartMs ?? DEFAULT_RTC_START_MS;
  if (typeof rtcStartMs !== "number" || !Number.isInteger(rtcStartMs) || rtcStartMs < 0 || rtcStartMs > 8.64e15) {
    throw new RangeError(`option deterministic.rtcStartMs: expected an integer number of ms since 1970, got ${String(rtcStartMs)}`);
  }
  const seed = given.seed ?? DEFAULT_RANDOM_SEED;
  if (typeof seed !== "number" || !Number.isSafeInteger(seed)) throw new RangeError(`option deterministic.seed: expected an integer, got ${String(seed)}`);
  return { nsPerInstruction: ns, rtcStartMs, seed };
}

export class VirtualClock {
  readonly nsPerInstruction: number;
  readonly rtcStartMs: number;
  private counter: LiveBytes | undefined;
  private lastRaw = 0;
  private executed = 0;
  private skippedMs = 0;
  private randomState: number;

  constructor(options: ResolvedDeterministicOptions) {
    this.nsPerInstruction = options.nsPerInstruction;
    this.rtcStartMs = options.rtcStartMs;
    // Spread the seed over 32 bits so that small seeds give unrelated sequences.
    this.randomState = Math.imul((options.seed % 0x1_0000_0000) ^ 0x9e37_79b9, 0x85eb_ca6b) >>> 0 || 1;
  }

  /**
   * Starts counting the CPU's instructions. Before this the clock reads 0 (v86 reads it while it
   * initialises, before the guest runs).
   */
  attach(cpu: V86Cpu): void {
    if (this.counter) throw new Error("VirtualClock: already attached to a CPU");
    this.counter = new LiveBytes(cpu.wasm_memory, cpu.instruction_counter.byteOffset, 4);
    this.lastRaw = this.readRaw();
  }

  /** Guest time since power-on, in ms. */
  now(): number {
    return this.skippedMs + (this.instructions * this.nsPerInstruction) / 1e6;
  }

  /** Instructions executed since `attach` (v86's 32-bit counter, unwrapped; it is read far more often than every 2^32). */
  get instructions(): number {
    if (this.counter) {
      const raw = this.readRaw();
      this.executed += (raw - this.lastRaw) >>> 0;
      this.lastRaw = raw;
    }
    return this.executed;
  }

  /** Time skipped while the CPU was halted, in ms. */
  get idleMs(): number {
    return this.skippedMs;
  }

  /** The CPU is halted until its next timer, `ms` from now: guest time jumps there. */
  skip(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`VirtualClock.skip: expected a finite number of ms >= 0, got ${ms}`);
    this.skippedMs += ms;
  }

  /** The date the guest's clocks show (RTC, VMware backdoor), in ms since 1970. */
  dateNow(): number {
    return this.rtcStartMs + Math.floor(this.now());
  }

  /** The next seeded 32-bit random number (xorshift32), as a signed int32 like v86's `get_rand_int`. */
  nextRandom(): number {
    let x = this.randomState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.randomState = x >>> 0;
    return x | 0;
  }

  saveState(): VirtualClockState {
    return { nsPerInstruction: this.nsPerInstruction, rtcStartMs: this.rtcStartMs, instructions: this.instructions, idleMs: this.skippedMs, randomState: this.randomState };
  }

  /**
   * Goes on from a saved clock (after v86 restored its CPU): the time and random sequence continue
   * from the saved ones and the CPU's counter is counted from here. The state was checked by
   * `checkClockState`; a clock of other options is refused there.
   */
  restoreState(state: VirtualClockState): void {
    this.executed = state.instructions;
    this.skippedMs = state.idleMs;
    this.randomState = state.randomState >>> 0 || 1;
    if (this.counter) this.lastRaw = this.readRaw();
  }

  /** Why `state` cannot be restored into this clock, or undefined when it can. */
  checkState(state: unknown): string | undefined {
    if (typeof state !== "object" || state === null) return "the virtual clock's state is missing";
    const s = state as Record<string, unknown>;
    if (s.nsPerInstruction !== this.nsPerInstruction || s.rtcStartMs !== this.rtcStartMs) {
      return `the virtual clock was saved with nsPerInstruction ${String(s.nsPerInstruction)} and rtcStartMs ${String(s.rtcStartMs)}, this machine has ${this.nsPerInstruction} and ${this.rtcStartMs}`;
    }
    for (const key of ["instructions", "idleMs", "randomState"] as const) {
      const v = s[key];
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (key !== "idleMs" && !Number.isSafeInteger(v))) return `the virtual clock's ${key} is not a count (${String(v)})`;
    }
    return undefined;
  }

  private readRaw(): number {
    const b = this.counter!.bytes;
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }
}
