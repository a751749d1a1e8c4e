/**
 * Primary fault logging (VT-d §7.2.1) into the fault recording registers, and the fault
 * status conditions that raise the fault event (VT-d §7.3.1).
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { FRCD_OFFSET, FRCD_SIZE, Fsts, FSTS_EVENT_CONDITIONS, Reg } from "../../spec/registers.ts";
import { FaultReason, isQualified } from "../../spec/fault-reasons.ts";
import type { InterruptEvent } from "./interrupt-event.ts";
import type { RegisterFile } from "../registers/register-file.ts";
import type { DeviceStats, UnitCounters } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { Section } from "../state/codec.ts";

const PFO = Number(Fsts.PFO);
const PPF = Number(Fsts.PPF);
const EVENT_CONDITIONS = Number(FSTS_EVENT_CONDITIONS);
const F = 0x8000_0000;
const T1 = 0x4000_0000;
const PP = 0x8000_0000;
const PRIV = 0x2000_0000;

export class FaultRecording {
  /** Index of the next fault recording register hardware writes. */
  private next = 0;

  constructor(
    private readonly regs: RegisterFile,
    private readonly records: number,
    private readonly event: InterruptEvent,
    private readonly tracer: Tracer,
    private readonly stats: DeviceStats,
    private readonly counters: UnitCounters,
  ) {}

  reset(): void {
    this.next = 0;
  }

  /** Snapshot (state/): the index of the next record hardware writes (the records are registers). */
  save(): { next: number } {
    return { next: this.next };
  }

  decode(s: Section): { next: number } {
    return { next: s.int("next", 0, this.records - 1) };
  }

  load(state: { next: number }): void {
    this.next = state.next;
  }

  private recordHigh(i: number): number {
    return FRCD_OFFSET + FRCD_SIZE * i + 12;
  }

  /**
   * A fault on a request from `sid`: a translation fault for `address`, or an interrupt-remapping
   * fault with `address` = FI (the interrupt index << 48, or 0; VT-d §11.4.11), `write` true (an
   * interrupt request is a write, T = 0). Qualified faults behind an entry with FPD = 1 (context
   * entry or IRTE) are not recorded. `exactAddress` is the request's address when `address` (a
   * number) is not exact, at or above 2^53. A request-with-PASID (scalable mode) gives its `pasid`
   * (PP = 1, PV) and `privileged` (PRIV); -1: none. Returns whether a record was written.
   */
  record(sid: number, address: number, reason: FaultReason, write: boolean, faultProcessingDisable: boolean, exactAddress?: bigint, pasid = -1, privileged = false): boolean {
    let why = "recorded";
    let recorded = false;
    const status = this.regs.get32(Reg.FSTS);
    if (faultProcessingDisable && isQualified(reason)) {
      why = "FPD";
      this.stats.faultsSuppressed++;
    } else if (status & PFO) {
      why = "overflow pending (PFO)";
      this.stats.faultsDropped++;
    } else if (this.pendingFor(sid)) {
      // Same-source compression: one pending record per requester is enough (VT-d §7.2.1).
      why = "a record for this source-id is pending";
      this.stats.faultsDropped++;
    } else if (this.regs.get32(this.recordHigh(this.next)) & F) {
      why = "fault recording registers full: PFO";
      this.regs.update32(Reg.FSTS, PFO, 0);
      this.stats.faultsDropped++;
    } else {
      const i = this.next;
      const base = FRCD_OFFSET + FRCD_SIZE * i;
      if (exactAddress === undefined) {
        const page = address - (address % 4096);
        this.regs.set32(base, (page % TWO_POW_32) >>> 0);
        this.regs.set32(base + 4, Math.floor(page / TWO_POW_32) >>> 0);
      } else {
        // FI is bits 63:12 of the request's address, exactly (VT-d §11.4.14).
        this.regs.set32(base, Number(exactAddress & 0xffff_f000n));
        this.regs.set32(base + 4, Number((exactAddress >> 32n) & 0xffff_ffffn));
      }
      // PP (bit 95) and PRIV (bit 93) in the dword at +8, PV (bits 123:104) in the dword at +12 (VT-d §11.4.14).
      const pp = pasid >= 0 ? PP | (privileged ? PRIV : 0) : 0;
      const pv = pasid >= 0 ? (pasid & 0xf_ffff) << 8 : 0;
      this.regs.set32(base + 8, ((sid & 0xffff) | pp) >>> 0);
      this.regs.set32(base + 12, (F | (write ? 0 : T1) | pv | (reason & 0xff)) >>> 0);
      this.next = (i + 1) % this.records;
      recorded = true;
      this.stats.faultsRecorded++;
      if ((status & PPF) === 0) {
        this.regs.set32(Reg.FSTS, ((status & ~0xff00) | PPF | (i << 8)) >>> 0);
        if ((status & EVENT_CONDITIONS) === 0) this.event.signal();
      }
    }
    this.counters.fault(sid, reason, recorded);
    if (this.tracer.active) {
      this.tracer.emit({ type: "vtd_fault", sid, reason, address: exactAddress ?? BigInt(address), write, recorded, why });
    }
    return recorded;
  }

  private pendingFor(sid: number): boolean {
    for (let i = 0; i < this.records; i++) {
      const base = FRCD_OFFSET + FRCD_SIZE * i;
      if ((this.regs.get32(base + 12) & F) && (this.regs.get32(base + 8) & 0xffff) === sid) return true;
    }
    return false;
  }

  /** Sets an invalidation-queue error condition (IQE, ICE, ITE): a fault event if none was pending. */
  raise(condition: bigint): void {
    const status = this.regs.get32(Reg.FSTS);
    this.regs.update32(Reg.FSTS, Number(condition), 0);
    if ((status & EVENT_CONDITIONS) === 0) this.event.signal();
  }

  /** After software wrote FSTS or a fault record: PPF follows the F bits; IP clears when all is serviced. */
  refresh(): void {
    let pending = false;
    for (let i = 0; i < this.records && !pending; i++) pending = (this.regs.get32(this.recordHigh(i)) & F) !== 0;
    this.regs.update32(Reg.FSTS, pending ? PPF : 0, pending ? 0 : PPF);
    if ((this.regs.get32(Reg.FSTS) & EVENT_CONDITIONS) === 0) this.event.clearPending();
  }
}
