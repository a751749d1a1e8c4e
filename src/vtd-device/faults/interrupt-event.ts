/**
 * The unit's two interrupt sources, the fault event (VT-d §7.3) and the invalidation completion
 * event (VT-d §6.5.2.7), follow one pattern: a control register with IM and IP, a data and an
 * address register; an MSI is sent when a condition arises and IM is clear, or when software
 * clears IM while IP is set.
 */
import { EventControl } from "../../spec/registers.ts";
import type { RegisterFile } from "../registers/register-file.ts";

const IM = Number(EventControl.IM);
const IP = Number(EventControl.IP);

export class InterruptEvent {
  constructor(
    private readonly regs: RegisterFile,
    readonly source: "fault" | "completion",
    private readonly controlOffset: number,
    private readonly dataOffset: number,
    private readonly addressOffset: number,
    private readonly upperAddressOffset: number,
    private readonly send: (source: "fault" | "completion", address: bigint, data: number) => void,
  ) {}

  /** A new interrupt condition: IP is set, and the message goes out unless masked. */
  signal(): void {
    this.regs.update32(this.controlOffset, IP, 0);
    if ((this.regs.get32(this.controlOffset) & IM) === 0) this.deliver();
  }

  /** After a write to the control register: unmasking with IP set sends the pending message. */
  onControlWrite(): void {
    const control = this.regs.get32(this.controlOffset);
    if ((control & IP) !== 0 && (control & IM) === 0) this.deliver();
  }

  /** Software serviced every condition: the pending interrupt is withdrawn. */
  clearPending(): void {
    this.regs.update32(this.controlOffset, 0, IP);
  }

  private deliver(): void {
    this.regs.update32(this.controlOffset, 0, IP);
    const address = (BigInt(this.regs.get32(this.upperAddressOffset)) << 32n) | BigInt(this.regs.get32(this.addressOffset));
    this.send(this.source, address, this.regs.get32(this.dataOffset));
  }
}
