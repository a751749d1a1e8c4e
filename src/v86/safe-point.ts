/**
 * The JIT trap and its way around (see shared/reference/v86-platform.md): raising an interrupt
 * from inside an MMIO or port handler corrupts JIT-compiled guest code. So handlers only queue
 * actions here and set `in_hlt` so the CPU loop stops after the current block; the queue runs
 * from a wrapped `cpu.run_hardware_timers`, which v86 calls between instructions.
 *
 * Order is deterministic: actions run in the order queued; timed actions run in due-time order
 * (ties in queueing order). Time is v86's own clock (the `now` it passes its timers, in ms): the
 * host's, or on a deterministic machine the virtual clock (virtual-clock.ts), given as `clock`.
 *
 * v86 notices `in_hlt` only between blocks: its interpreter runs a loop that stays in one page
 * for up to ~100k instructions, and JIT-compiled loops likewise, so a deferred action runs up to
 * ~100k guest instructions after it was queued (a fraction of a millisecond).
 *
 * Only an action queued while v86 runs a slice of guest code (from a handler) forces the stop.
 * One queued from outside (host code between slices, e.g. a host-side driver) just waits for the
 * next safe point: forcing `in_hlt` then, with the guest's IF clear, made v86 take the CPU for
 * dead (HLT with interrupts off) and stop for good.
 *
 * If the guest executes HLT after a handler forced the stop, v86 calls the timers from the HLT
 * itself; the stop is then not cleared, so the HLT waits for an interrupt as it should. This is
 * recognised without paging only (with paging on, the guest may see a spurious wake-up).
 */
import type { V86Cpu } from "./internals.ts";
import { LiveBytes } from "./wasm-views.ts";

const HLT_OPCODE = 0xf4;

interface TimedAction {
  due: number;
  sequence: number;
  action: () => void;
}

export class SafePoints {
  private readonly pending: (() => void)[] = [];
  private readonly timed: TimedAction[] = [];
  private readonly inHlt: LiveBytes;
  private sequence = 0;
  private forcedStop = false;
  private frozen = false;
  private draining = false;
  private lastNow: number | undefined;
  private readonly tickListeners: ((elapsedMs: number, now: number) => void)[] = [];
  /** Guest time as v86 sees it: the latest `now` passed to its timers (ms). */
  now = 0;
  /** True while v86 runs a slice of guest code (set by the machine around v86's tick). */
  inGuestSlice = false;

  constructor(
    private readonly cpu: V86Cpu,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.inHlt = new LiveBytes(cpu.wasm_memory, cpu.in_hlt.byteOffset, 1);
    const original = cpu.run_hardware_timers.bind(cpu);
    cpu.run_hardware_timers = (acpiEnabled: number, now: number) => {
      this.atSafePoint(now);
      const next = original(acpiEnabled, now);
      return Math.min(next, this.msUntilNextDue(now));
    };
  }

  /** Runs `action` at the next safe point, or `delayMs` later on v86's clock. Safe from any handler. */
  defer(action: () => void, delayMs = 0): void {
    if (delayMs > 0) {
      // Runs at the first safe point after it is due; a halted CPU is woken in time because the
      // wrapped timers report it as their next deadline.
      this.timed.push({ due: this.clock() + delayMs, sequence: this.sequence++, action });
      this.timed.sort((a, b) => a.due - b.due || a.sequence - b.sequence);
      return;
    }
    this.pending.push(action);
    if (!this.draining) this.requestStop();
  }

  /** Called at every safe point with the guest time elapsed since the previous one. */
  onTick(listener: (elapsedMs: number, now: number) => void): void {
    this.tickListeners.push(listener);
  }

  /** Stops the CPU for good after the current block (the guest exited): nothing runs any more. */
  freeze(): void {
    this.frozen = true;
    this.inHlt.bytes[0] = 1;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Actions waiting for a safe point (queued or timed): a machine can be saved only when there are none. */
  get pendingActions(): number {
    return this.pending.length + this.timed.length;
  }

  /** v86's clock at the last safe point (undefined before the first one). */
  get lastSafePoint(): number | undefined {
    return this.lastNow;
  }

  /**
   * After a restore. On host time v86's clock has jumped (another process, another moment): the
   * next safe point reports no elapsed time rather than the jump (`lastNow` undefined). On a
   * restored virtual clock, `lastNow` is the saved one, so time elapses as in an uninterrupted run.
   */
  rebase(lastNow: number | undefined): void {
    this.lastNow = lastNow;
    if (lastNow !== undefined) this.now = lastNow;
  }

  private requestStop(): void {
    if (this.frozen || this.forcedStop || !this.inGuestSlice) return;
    // Only a running CPU can have called us from a handler; a halted one is woken by the timers.
    if (this.inHlt.bytes[0] !== 0) return;
    this.forcedStop = true;
    this.inHlt.bytes[0] = 1;
  }

  private atSafePoint(now: number): void {
    if (this.frozen) {
      this.inHlt.bytes[0] = 1;
      return;
    }
    if (this.forcedStop) {
      this.forcedStop = false;
      if (!this.guestJustHalted()) this.inHlt.bytes[0] = 0;
    }
    this.now = now;
    const elapsed = this.lastNow === undefined ? 0 : Math.max(0, now - this.lastNow);
    this.lastNow = now;
    this.draining = true;
    try {
      for (const listener of this.tickListeners) listener(elapsed, now);
      this.drain(now);
    } finally {
      this.draining = false;
    }
  }

  /** True when the last instruction executed was HLT (EIP right after a 0xF4 byte), paging off. */
  private guestJustHalted(): boolean {
    const cpu = this.cpu;
    const previous = cpu.previous_ip[0]! >>> 0;
    if (((previous + 1) >>> 0) !== cpu.instruction_pointer[0]! >>> 0) return false;
    if (cpu.cr[0]! & 0x8000_0000) return false;
    return previous < (cpu.memory_size[0]! >>> 0) && cpu.read_blob(previous, 1)[0] === HLT_OPCODE;
  }

  private drain(now: number): void {
    for (;;) {
      const action = this.pending.shift();
      if (action) {
        action();
        continue;
      }
      const first = this.timed[0];
      if (first && first.due <= Math.max(now, this.clock())) {
        this.timed.shift();
        first.action();
        continue;
      }
      return;
    }
  }

  private msUntilNextDue(now: number): number {
    if (this.pending.length > 0) return 0;
    const first = this.timed[0];
    return first ? Math.max(0, first.due - now) : Infinity;
  }
}
