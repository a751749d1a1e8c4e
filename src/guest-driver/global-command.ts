/**
 * GCMD writes by the spec's update sequence (VT-d §11.4.4): read GSTS, keep the persistent bits
 * (GSTS & 0x96FFFFFF drops the one-shot status bits), set or clear exactly one bit, write GCMD,
 * then poll GSTS for that bit's status, bounded. One command at a time.
 */
import { Gcmd, Gsts, GSTS_PERSISTENT_MASK, Reg } from "../spec/registers.ts";
import type { DriverCounters } from "./counters.ts";
import type { Clock } from "./platform.ts";
import { pollUntil } from "./poll.ts";
import type { UnitRegisters } from "./unit-registers.ts";

const PERSISTENT = Number(GSTS_PERSISTENT_MASK);

export class GlobalCommand {
  constructor(
    private readonly regs: UnitRegisters,
    private readonly clock: Clock,
    private readonly counters: DriverCounters,
    private readonly timeoutMs: number,
  ) {}

  status(): number {
    return this.regs.read32(Reg.GSTS);
  }

  /** A persistent command (TE, QIE, IRE, CFI): status follows it. */
  setPersistent(command: bigint, status: bigint, on: boolean, name: string): void {
    const bit = Number(command);
    const current = this.status() & PERSISTENT;
    this.regs.write32(Reg.GCMD, (on ? current | bit : current & ~bit) >>> 0);
    const want = on ? Number(status) : 0;
    pollUntil(this.clock, this.counters, this.timeoutMs, () => ((this.status() & Number(status)) >>> 0) === want,
      `GCMD.${name} = ${on ? 1 : 0}: GSTS status bit becoming ${on ? 1 : 0}`);
  }

  /** A one-shot command (SRTP, WBF, SIRTP): poll the status bit for `done`. */
  oneShot(command: bigint, status: bigint, done: 0 | 1, name: string): void {
    const current = this.status() & PERSISTENT;
    this.regs.write32(Reg.GCMD, (current | Number(command)) >>> 0);
    const want = done ? Number(status) : 0;
    pollUntil(this.clock, this.counters, this.timeoutMs, () => ((this.status() & Number(status)) >>> 0) === want,
      `GCMD.${name}: GSTS status bit becoming ${done}`);
  }

  setRootTablePointer(): void {
    this.oneShot(Gcmd.SRTP, Gsts.RTPS, 1, "SRTP");
  }

  flushWriteBuffer(): void {
    this.counters.writeBufferFlushes++;
    this.oneShot(Gcmd.WBF, Gsts.WBFS, 0, "WBF");
  }
}
