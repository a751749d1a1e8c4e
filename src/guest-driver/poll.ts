/**
 * Bounded busy-waiting: every handshake with the unit polls a condition with a bound, in platform
 * time, and fails with an error naming what did not happen (Linux panics after about 10 s; Xen
 * gives up after 1 s). The step grows from 1 µs to 1 ms, so a long wait costs few polls.
 */
import type { DriverCounters } from "./counters.ts";
import { VtdDriverError } from "./errors.ts";
import type { Clock } from "./platform.ts";

const FIRST_STEP_MS = 0.001;
const LONGEST_STEP_MS = 1;
const MAX_POLLS = 2_000_000;

export function pollUntil(clock: Clock, counters: DriverCounters, timeoutMs: number, done: () => boolean, what: string): void {
  if (done()) return;
  const start = clock.now();
  let step = FIRST_STEP_MS;
  for (let polls = 1; polls < MAX_POLLS; polls++) {
    const elapsed = clock.now() - start;
    if (elapsed >= timeoutMs) break;
    const wait = Math.min(step, timeoutMs - elapsed);
    clock.spin(wait);
    counters.spunMs += wait;
    counters.pollIterations++;
    if (done()) return;
    step = Math.min(step * 2, LONGEST_STEP_MS);
  }
  throw new VtdDriverError("hardware-timeout", `${what} did not happen within ${timeoutMs} ms`);
}

/** `value` when it is a positive finite number, else an error naming the option. */
export function positive(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) throw new VtdDriverError("bad-argument", `${name} ${String(value)}: expected a positive number`);
  return value;
}

/** The operation's Promise, or a rejected one when it threw before starting; undefined (nothing to wait for): resolved. */
export function settled(operation: () => Promise<void> | undefined): Promise<void> {
  try {
    return operation() ?? Promise.resolve();
  } catch (error) {
    return Promise.reject(error);
  }
}
