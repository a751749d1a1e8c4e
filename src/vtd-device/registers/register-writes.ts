/**
 * A guest's register write: stored by the write rules of each field (register-file.ts), then the
 * side effects of each written dword (VT-d §11.4 per register): global commands, register-based
 * invalidation, fault status and events, the queue's tail and completion status. A write of
 * another size than 4 or 8 bytes, misaligned or outside the window is ignored (and traced).
 */
import { FRCD_OFFSET, FRCD_SIZE, IOTLB_OFFSET, Reg } from "../../spec/registers.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { InterruptEvent } from "../faults/interrupt-event.ts";
import type { InvalidationQueue } from "../invalidation/invalidation-queue.ts";
import type { RegisterInvalidation } from "../invalidation/register-invalidation.ts";
import type { WriteBufferAccess } from "../memory/write-buffer.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { GlobalCommand } from "./global-command.ts";
import type { RegisterFile } from "./register-file.ts";
import type { RegisterSpec } from "./register-table.ts";

/** What register writes act on. */
export interface RegisterWriteTargets {
  regs: RegisterFile;
  windowSize: number;
  stats: DeviceStats;
  trace: Tracer;
  writeBuffer: WriteBufferAccess | undefined;
  globalCommand: GlobalCommand;
  registerInvalidation: RegisterInvalidation;
  faults: FaultRecording;
  faultEvent: InterruptEvent;
  completionEvent: InterruptEvent;
  queue: InvalidationQueue;
}

export class RegisterWrites {
  constructor(private readonly t: RegisterWriteTargets) {}

  /** `size` bytes at `offset`: `low` the first dword's value, `high` the second's (8-byte writes). */
  write(offset: number, size: number, low: number, high: number): void {
    const { stats, trace, regs } = this.t;
    stats.registerWrites++;
    if ((size !== 4 && size !== 8) || !Number.isSafeInteger(offset) || offset % size !== 0 || offset < 0 || offset + size > this.t.windowSize) {
      if (trace.active) trace.emit({ type: "vtd_reg_ignored", offset, size, value: traceValue(size, low, high), why: "size, alignment or offset not a register access" });
      return;
    }
    if (trace.active) trace.emit({ type: "vtd_reg_write", offset, size, value: traceValue(size, low, high) });
    // Both dwords are stored before either acts, as one 8-byte access would be.
    regs.writeDword(offset, low);
    if (size === 8) {
      regs.writeDword(offset + 4, high);
      this.actOnDword(offset, low);
      this.actOnDword(offset + 4, high);
    } else {
      this.actOnDword(offset, low);
    }
  }

  /** Side effects of a written dword, after the write rule (VT-d §11.4 per register). */
  private actOnDword(dword: number, written: number): void {
    const t = this.t;
    const own = t.regs.byOffset[dword];
    const upperOf = t.regs.byOffset[dword - 4];
    let r: RegisterSpec | undefined;
    if (own && (own.width === 32 || own.actsOn === "low")) r = own;
    else if (upperOf && upperOf.width === 64 && upperOf.actsOn === "high") r = upperOf;
    if (!r) return;
    // RWBF: the unit flushes its write buffer before it carries out an invalidation (VT-d §6.8).
    if (t.writeBuffer && (r.offset === Reg.CCMD || r.offset === IOTLB_OFFSET || r.offset === Reg.IQT)) t.writeBuffer.flush();
    switch (r.offset) {
      case Reg.GCMD: return t.globalCommand.write(written);
      case Reg.CCMD: return t.registerInvalidation.onContextCommand();
      case IOTLB_OFFSET: return t.registerInvalidation.onIotlbCommand();
      case Reg.FSTS: return t.faults.refresh();
      case Reg.FECTL: return t.faultEvent.onControlWrite();
      case Reg.ICS: return t.queue.onCompletionStatusWrite();
      case Reg.IECTL: return t.completionEvent.onControlWrite();
      case Reg.IQT: return t.queue.onTailWrite();
    }
    if (r.offset >= FRCD_OFFSET && (r.offset - FRCD_OFFSET) % FRCD_SIZE === 8) t.faults.refresh();
  }
}

/** The written value as a trace shows it (only built while someone listens). */
function traceValue(size: number, low: number, high: number): bigint {
  const value = size === 8 ? (BigInt(high) << 32n) | BigInt(low) : BigInt(low);
  return size >= 8 ? value : BigInt.asUintN(Math.max(8, size * 8), value);
}
