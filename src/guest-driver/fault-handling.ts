/**
 * Primary fault logging, the software side (VT-d §7.2.1): on the fault
 * event (or when asked), read FSTS; if PPF, start at FRI and read records while their F bit is
 * set (upper dword first), report each, clear it by writing F; then clear PFO. After an overflow
 * every record is looked at, since recording resumes at hardware's own index.
 */
import { EventControl, Fsts, FrcdHi, Reg } from "../spec/registers.ts";
import type { DriverCounters } from "./counters.ts";
import type { UnitCapabilities } from "./discovery.ts";
import type { FaultRecord } from "./options.ts";
import type { MsiMessage } from "./platform.ts";
import type { UnitRegisters } from "./unit-registers.ts";

const PPF = Number(Fsts.PPF), PFO = Number(Fsts.PFO);
const FRI_SHIFT = Fsts.FRI.shift;
/** F, T1, FR, PP and PV as bits of the record's dword at +12 / +8. */
const F = 2 ** (FrcdHi.F.shift - 32);
const T1 = 2 ** (FrcdHi.T1.shift - 32);
const FR_MASK = 0xff;
const PP = 2 ** FrcdHi.PP.shift;
const PV_SHIFT = FrcdHi.PV.shift - 32;
const ADDRESS_MASK = ~0xfffn;

export class FaultHandling {
  constructor(
    private readonly regs: UnitRegisters,
    private readonly caps: UnitCapabilities,
    private readonly counters: DriverCounters,
    private readonly onFault?: (fault: FaultRecord) => void,
  ) {}

  /** FEDATA, FEADDR, FEUADDR, then FECTL = 0 (unmasked), read back. */
  programInterrupt(msi: MsiMessage): void {
    this.regs.programEvent({ control: Reg.FECTL, data: Reg.FEDATA, address: Reg.FEADDR, upperAddress: Reg.FEUADDR }, msi);
  }

  get masked(): boolean {
    return (this.regs.read32(Reg.FECTL) & Number(EventControl.IM)) !== 0;
  }

  /** Reads, reports and clears the pending fault records; returns them. */
  handle(): FaultRecord[] {
    const found: FaultRecord[] = [];
    const fsts = this.regs.read32(Reg.FSTS);
    if ((fsts & (PPF | PFO)) === 0) return found;
    const count = this.caps.faultRecordCount;
    const overflow = (fsts & PFO) !== 0;
    let index = (fsts >>> FRI_SHIFT) & 0xff;
    if (index >= count) index = 0;
    for (let seen = 0; seen < count; seen++, index = (index + 1) % count) {
      const at = this.caps.faultRecordOffset + 16 * index;
      const high = this.regs.read32(at + 12);
      if ((high & F) === 0) {
        if (overflow) continue;
        break;
      }
      const word2 = this.regs.read32(at + 8);
      const low = this.regs.read64(at);
      const record: FaultRecord = {
        index,
        sid: word2 & 0xffff,
        reason: high & FR_MASK,
        address: low & ADDRESS_MASK,
        write: (high & T1) === 0,
      };
      if ((word2 & PP) !== 0) record.pasid = (high >>> PV_SHIFT) & 0xfffff;
      this.regs.write32(at + 12, F);
      this.counters.faultsReported++;
      found.push(record);
      this.onFault?.(record);
    }
    if (overflow) this.regs.write32(Reg.FSTS, PFO);
    return found;
  }
}
