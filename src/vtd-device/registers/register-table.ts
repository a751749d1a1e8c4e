/**
 * The register file as data (VT-d §11.4): reset value and masks per register. The reset test,
 * the write rule and docs all come from this one table.
 */
import { EventControl, FRCD_OFFSET, FRCD_SIZE, Fsts, Ics, IOTLB_OFFSET, IVA_OFFSET, Reg, VERSION, Ccmd, Iotlb, Iva, Iqa, IQ_HEAD_TAIL_MASK, FrcdHi } from "../../spec/registers.ts";
import { bits, fieldMask } from "../../spec/field.ts";
import { Irta } from "../../spec/interrupts.ts";
import { capabilityValue, extendedCapabilityValue } from "./capabilities.ts";
import type { ResolvedOptions } from "../options.ts";

export interface RegisterSpec {
  readonly name: string;
  readonly offset: number;
  readonly width: 32 | 64;
  readonly reset: bigint;
  readonly writable: bigint;
  readonly writeOneToClear: bigint;
  /** Bits that read as 0 whatever was written. */
  readonly writeOnly: bigint;
  /** For 64-bit registers with a side effect: the dword whose write makes the register act. */
  readonly actsOn?: "low" | "high";
  readonly spec: string;
}

const ALL32 = 0xffff_ffffn;

function reg(
  name: string, offset: number, width: 32 | 64, spec: string,
  masks: { reset?: bigint; writable?: bigint; writeOneToClear?: bigint; writeOnly?: bigint; actsOn?: "low" | "high" } = {},
): RegisterSpec {
  return {
    name, offset, width, spec,
    reset: masks.reset ?? 0n,
    writable: masks.writable ?? 0n,
    writeOneToClear: masks.writeOneToClear ?? 0n,
    writeOnly: masks.writeOnly ?? 0n,
    ...(masks.actsOn ? { actsOn: masks.actsOn } : {}),
  };
}

export function registerTable(o: ResolvedOptions): RegisterSpec[] {
  const table: RegisterSpec[] = [
    reg("VER", Reg.VER, 32, "§11.4.1", { reset: BigInt(VERSION) }),
    reg("CAP", Reg.CAP, 64, "§11.4.2", { reset: capabilityValue(o) }),
    reg("ECAP", Reg.ECAP, 64, "§11.4.3", { reset: extendedCapabilityValue(o) }),
    reg("GCMD", Reg.GCMD, 32, "§11.4.4", { writable: 0xff80_0000n, writeOnly: 0xff80_0000n }),
    reg("GSTS", Reg.GSTS, 32, "§11.4.5"),
    reg("RTADDR", Reg.RTADDR, 64, "§11.4.6", { writable: bits(63, 10) }),
    reg("CCMD", Reg.CCMD, 64, "§11.4.7.1", {
      writable: fieldMask(Ccmd.ICC) | fieldMask(Ccmd.CIRG) | fieldMask(Ccmd.FM) | fieldMask(Ccmd.SID) | fieldMask(Ccmd.DID),
      writeOnly: fieldMask(Ccmd.FM) | fieldMask(Ccmd.SID),
      actsOn: "high",
    }),
    reg("FSTS", Reg.FSTS, 32, "§11.4.9.1", { writeOneToClear: Fsts.PFO | Fsts.IQE | Fsts.ICE | Fsts.ITE }),
    reg("FECTL", Reg.FECTL, 32, "§11.4.9.2", { reset: EventControl.IM, writable: EventControl.IM }),
    reg("FEDATA", Reg.FEDATA, 32, "§11.4.9.3", { writable: 0xffffn }),
    reg("FEADDR", Reg.FEADDR, 32, "§11.4.9.4", { writable: 0xffff_fffcn }),
    reg("FEUADDR", Reg.FEUADDR, 32, "§11.4.9.5"),
    reg("AFLOG", Reg.AFLOG, 64, "§11.4.9.6"),
    reg("PMEN", Reg.PMEN, 32, "§11.4.10.1"),
    reg("PLMBASE", Reg.PLMBASE, 32, "§11.4.10.2"),
    reg("PLMLIMIT", Reg.PLMLIMIT, 32, "§11.4.10.3"),
    reg("PHMBASE", Reg.PHMBASE, 64, "§11.4.10.4"),
    reg("PHMLIMIT", Reg.PHMLIMIT, 64, "§11.4.10.5"),
    reg("IQH", Reg.IQH, 64, "§11.4.9.1"),
    reg("IQT", Reg.IQT, 64, "§11.4.9.2", { writable: IQ_HEAD_TAIL_MASK, actsOn: "low" }),
    reg("IQA", Reg.IQA, 64, "§11.4.9.3", { writable: Iqa.IQA | fieldMask(Iqa.DW) | fieldMask(Iqa.QS) }),
    reg("ICS", Reg.ICS, 32, "§11.4.9.8", { writeOneToClear: Ics.IWC }),
    reg("IECTL", Reg.IECTL, 32, "§11.4.9.9", { reset: EventControl.IM, writable: EventControl.IM }),
    reg("IEDATA", Reg.IEDATA, 32, "§11.4.9.10", { writable: ALL32 }),
    reg("IEADDR", Reg.IEADDR, 32, "§11.4.9.11", { writable: 0xffff_fffcn }),
    reg("IEUADDR", Reg.IEUADDR, 32, "§11.4.9.12"),
    reg("IQERCD", Reg.IQERCD, 64, "§11.4.9.4"),
    // Without interrupt remapping IRTA is reserved; it keeps QEMU's mask (intremap=off) for the
    // register comparison. With it, EIME is RsvdZ (ECAP.EIM = 0) and reads 0.
    reg("IRTA", Reg.IRTA, 64, "§11.4", { writable: o.interruptRemapping ? Irta.IRTA | fieldMask(Irta.S) : 0xffff_ffff_ffff_f80fn }),
    reg("IVA", IVA_OFFSET, 64, "§11.4.8.2", {
      writable: Iva.ADDR | fieldMask(Iva.IH) | fieldMask(Iva.AM),
      writeOnly: Iva.ADDR | fieldMask(Iva.IH) | fieldMask(Iva.AM),
    }),
    reg("IOTLB", IOTLB_OFFSET, 64, "§11.4.8.1", {
      writable: fieldMask(Iotlb.IVT) | fieldMask(Iotlb.IIRG) | fieldMask(Iotlb.DR) | fieldMask(Iotlb.DW) | fieldMask(Iotlb.DID),
      actsOn: "high",
    }),
  ];
  for (let i = 0; i < o.faultRecords; i++) {
    const offset = FRCD_OFFSET + FRCD_SIZE * i;
    table.push(reg(`FRCD${i}_LO`, offset, 64, "§11.4.11"));
    table.push(reg(`FRCD${i}_HI`, offset + 8, 64, "§11.4.11", { writeOneToClear: fieldMask(FrcdHi.F), actsOn: "high" }));
  }
  return table;
}

/** Bytes of the register file: up to the last fault recording register. */
export function registerWindowSize(faultRecords: number): number {
  return FRCD_OFFSET + FRCD_SIZE * faultRecords;
}
