/**
 * The timers behind a platform's `clock.after`: due in the platform's time, run in the order they
 * fall due (armed first, run first on a tie). The platform decides when they run (never inside a
 * driver call); this only keeps them.
 */
interface Timer {
  at: number;
  seq: number;
  callback: () => void;
}

export class TimerQueue {
  private timers: Timer[] = [];
  private seq = 0;

  /** Arms `callback` for `ms` after `now` (a negative delay counts as 0); returns its cancel function. */
  after(now: number, ms: number, callback: () => void): () => void {
    const timer = { at: now + Math.max(0, ms), seq: this.seq++, callback };
    this.timers.push(timer);
    this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** When the first timer falls due; undefined when none is armed. */
  get nextDue(): number | undefined {
    return this.timers[0]?.at;
  }

  /** True when a timer is due at `now`. */
  dueBy(now: number): boolean {
    const first = this.timers[0];
    return first !== undefined && first.at <= now;
  }

  /** The first timer due at `now`, disarmed; undefined when none is. */
  takeDue(now: number): (() => void) | undefined {
    return this.dueBy(now) ? this.timers.shift()!.callback : undefined;
  }
}
