/**
 * The guest driver's interrupts and timers on a v86 machine (V86DriverPlatform's
 * `interrupts` and `clock.after`). The v86 platform's `msiListener` shows every MSI here before
 * the LAPIC: one to a vector allocated here is consumed, any other is left to the LAPIC. The unit
 * raises MSIs inside register writes (MMIO handlers), and timers fall due in the unit's clock,
 * which the v86 platform moves on at its safe points (inside v86's main loop); so nothing runs at
 * once: what is due is noted, and a microtask runs the handlers once v86's slice has returned to
 * the event loop. Nobody is there to catch what they throw: errors are kept in `errors`.
 */
import type { InterruptController, MsiMessage } from "../guest-driver/platform.ts";
import { TimerQueue } from "../guest-driver/timer-queue.ts";
import { isInterruptAddress, MSI_ADDRESS_BASE } from "./lapic-msi.ts";

const FIRST_VECTOR = 0x30;
const LAST_VECTOR = 0xfe;

interface Vector {
  name: "fault" | "completion";
  handler: () => void;
}

export class DriverInterrupts implements InterruptController {
  /** MSIs that reached a handler here, by the name they were allocated for. */
  readonly delivered = { fault: 0, completion: 0 };
  /** MSIs seen that are not this platform's (left to the LAPIC). */
  foreign = 0;
  /** Errors thrown by interrupt handlers or timer callbacks. */
  readonly errors: unknown[] = [];

  private readonly handlers = new Map<number, Vector>();
  private nextVector = FIRST_VECTOR;
  private readonly pendingVectors: number[] = [];
  private readonly timers = new TimerQueue();
  private deliverScheduled = false;
  private delivering = false;

  /** `now`: the unit's clock, in which timers fall due. */
  constructor(private readonly now: () => number) {}

  allocateMsi(name: Vector["name"], handler: () => void): MsiMessage {
    if (this.nextVector > LAST_VECTOR) throw new RangeError("V86DriverPlatform: no MSI vector left");
    const vector = this.nextVector++;
    this.handlers.set(vector, { name, handler });
    return { address: MSI_ADDRESS_BASE, upperAddress: 0, data: vector }; // fixed delivery, edge
  }

  /** `clock.after`: `callback` once, `ms` of unit time from now, from a safe point. */
  after(ms: number, callback: () => void): () => void {
    return this.timers.after(this.now(), ms, callback);
  }

  /** The v86 platform's `msiListener`: true when the MSI is this platform's (consumed). */
  receiveMsi(address: bigint, data: number): boolean {
    const vector = data & 0xff;
    const fixed = ((data >>> 8) & 7) === 0;
    if (!isInterruptAddress(address) || !fixed || !this.handlers.has(vector)) {
      this.foreign++;
      return false;
    }
    this.pendingVectors.push(vector);
    this.scheduleDelivery();
    return true;
  }

  /** At a v86 safe point (inside v86's main loop): only notes what is due; the work runs in a microtask. */
  atSafePoint(): void {
    if (this.pendingVectors.length > 0 || this.timers.dueBy(this.now())) this.scheduleDelivery();
  }

  private scheduleDelivery(): void {
    if (this.deliverScheduled) return;
    this.deliverScheduled = true;
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.deliverScheduled = false;
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (;;) {
        const vector = this.pendingVectors.shift();
        let work: (() => void) | undefined;
        if (vector !== undefined) {
          const target = this.handlers.get(vector)!;
          this.delivered[target.name]++;
          work = target.handler;
        } else {
          work = this.timers.takeDue(this.now());
          if (!work) break;
        }
        try {
          work();
        } catch (error) {
          this.errors.push(error);
        }
      }
    } finally {
      this.delivering = false;
    }
  }
}
