/**
 * Register-based invalidation (VT-d §6.5.1): the context command register and the IOTLB
 * invalidate register. Each acts once its upper dword is written with ICC / IVT set, completes
 * at once, and reports the granularity it actually performed (CAIG / IAIG; 0 = refused).
 */
import { Cap, Ccmd, Granularity, Gsts, IOTLB_OFFSET, IVA_OFFSET, Iotlb, Iva, MAMV, Reg } from "../../spec/registers.ts";
import { getField, setField } from "../../spec/field.ts";
import type { Invalidation } from "./cache-invalidation.ts";
import type { RegisterFile } from "../registers/register-file.ts";

const QIES = Number(Gsts.QIES);

export class RegisterInvalidation {
  /** Scalable mode (set by the device on a unit that offers it): while TTM = 01 is latched, both commands are refused. */
  scalable: { readonly active: boolean } | undefined = undefined;

  constructor(private readonly regs: RegisterFile, private readonly invalidation: Invalidation) {}

  onContextCommand(): void {
    let ccmd = this.regs.get64(Reg.CCMD);
    if (getField(ccmd, Ccmd.ICC) === 0n) return;
    let actual: number = Granularity.Refused;
    // With queued invalidation enabled the registers must not be used (VT-d §6.5.2), nor in
    // scalable mode (VT-d §6.5.1: register-based invalidation is for legacy mode): refuse.
    if ((this.regs.get32(Reg.GSTS) & QIES) === 0 && !this.scalable?.active) {
      const did = Number(getField(ccmd, Ccmd.DID));
      switch (Number(getField(ccmd, Ccmd.CIRG))) {
        case Granularity.Global:
          this.invalidation.contextGlobal("register");
          actual = Granularity.Global;
          break;
        case Granularity.Domain:
          this.invalidation.contextDomain(did, "register");
          actual = Granularity.Domain;
          break;
        case Granularity.Device:
          this.invalidation.contextDevice(Number(getField(ccmd, Ccmd.SID)), Number(getField(ccmd, Ccmd.FM)), did, "register");
          actual = Granularity.Device;
          break;
      }
    }
    ccmd = setField(setField(ccmd, Ccmd.CAIG, actual), Ccmd.ICC, 0);
    this.regs.set64(Reg.CCMD, ccmd);
  }

  onIotlbCommand(): void {
    let command = this.regs.get64(IOTLB_OFFSET);
    if (getField(command, Iotlb.IVT) === 0n) return;
    let actual: number = Granularity.Refused;
    if ((this.regs.get32(Reg.GSTS) & QIES) === 0 && !this.scalable?.active) {
      const did = Number(getField(command, Iotlb.DID));
      switch (Number(getField(command, Iotlb.IIRG))) {
        case Granularity.Global:
          this.invalidation.iotlbGlobal("register");
          actual = Granularity.Global;
          break;
        case Granularity.Domain:
          this.invalidation.iotlbDomain(did, "register");
          actual = Granularity.Domain;
          break;
        case Granularity.Page: {
          const iva = this.regs.get64(IVA_OFFSET);
          const am = Number(getField(iva, Iva.AM));
          if (am <= MAMV) {
            this.invalidation.iotlbPages(did, this.pageAddress(iva), am, getField(iva, Iva.IH) === 1n, "register");
            actual = Granularity.Page;
          }
          break;
        }
      }
    }
    command = setField(setField(command, Iotlb.IAIG, actual), Iotlb.IVT, 0);
    this.regs.set64(IOTLB_OFFSET, command);
  }

  /** IVA.ADDR without the bits at and above MGAW, which hardware ignores (VT-d §11.4.8.2). */
  private pageAddress(iva: bigint): number {
    const width = getField(this.regs.get64(Reg.CAP), Cap.MGAW) + 1n;
    return Number(iva & Iva.ADDR & ((1n << width) - 1n));
  }
}
