/**
 * Which named fields of src/spec each register of the unit has, for the register panel: the
 * spec's field tables (some are Field objects, some single-bit masks) read into one shape.
 * The numbers stay in src/spec; only the pairing of a register name with its table is here.
 */
import {
  Cap, Ccmd, Ecap, EventControl, FrcdHi, FrcdLo, Fsts, Gcmd, Gsts, Ics, Iotlb, Iqa, Iva, Pmen, Rtaddr, type Field,
} from "../src/spec/index.ts";
import { FaultReason } from "../src/spec/index.ts";

export interface NamedField {
  name: string;
  shift: number;
  width: number;
}

type SpecTable = Readonly<Record<string, Field | bigint>>;

/** A spec table as fields; a bigint mask is a run of bits. */
function fieldsOf(table: SpecTable): NamedField[] {
  return Object.entries(table)
    .map(([name, f]) => {
      if (typeof f !== "bigint") return { name, shift: f.shift, width: f.width };
      let shift = 0;
      while (shift < 64 && ((f >> BigInt(shift)) & 1n) === 0n) shift++;
      let width = 0;
      while (shift + width < 64 && ((f >> BigInt(shift + width)) & 1n) === 1n) width++;
      return { name, shift, width };
    })
    .sort((a, b) => b.shift - a.shift);
}

/** Register name (as the unit's register table spells it) to its fields. */
export const REGISTER_FIELDS: Readonly<Record<string, readonly NamedField[]>> = {
  CAP: fieldsOf(Cap),
  ECAP: fieldsOf(Ecap),
  GCMD: fieldsOf(Gcmd),
  GSTS: fieldsOf(Gsts),
  RTADDR: fieldsOf(Rtaddr),
  CCMD: fieldsOf(Ccmd),
  FSTS: fieldsOf(Fsts),
  FECTL: fieldsOf(EventControl),
  IECTL: fieldsOf(EventControl),
  PMEN: fieldsOf(Pmen),
  IQA: fieldsOf(Iqa),
  ICS: fieldsOf(Ics),
  IVA: fieldsOf(Iva),
  IOTLB: fieldsOf(Iotlb),
  FRCD0_LO: fieldsOf(FrcdLo),
  FRCD0_HI: fieldsOf(FrcdHi),
};

/** Fault recording registers are FRCDn_LO/HI: the fields of FRCD0's. */
export function fieldsFor(name: string): readonly NamedField[] {
  return REGISTER_FIELDS[name] ?? REGISTER_FIELDS[name.replace(/^FRCD\d+_/, "FRCD0_")] ?? [];
}

/**
 * The fields of `value` in words: a one-bit field by its name when set, a wider one as
 * NAME=value (addresses in hex) when not zero. CAP and ECAP also show their zero fields, as they
 * describe what the unit offers; a fault record's FR gets its reason's name.
 */
export function describeFields(name: string, value: bigint): string[] {
  const all = name === "CAP" || name === "ECAP";
  const out: string[] = [];
  for (const f of fieldsFor(name)) {
    const v = (value >> BigInt(f.shift)) & ((1n << BigInt(f.width)) - 1n);
    if (f.width === 1) {
      if (v === 1n) out.push(f.name);
      else if (all) out.push(`${f.name}=0`);
      continue;
    }
    if (v === 0n && !all) continue;
    const shown = f.shift >= 12 && f.width >= 20 ? `0x${(v << BigInt(f.shift)).toString(16)}` : f.width > 4 ? `0x${v.toString(16)}` : String(v);
    const reason = f.name === "FR" && name.endsWith("_HI") ? ` ${FaultReason[Number(v)] ?? ""}`.trimEnd() : "";
    out.push(`${f.name}=${shown}${reason}`);
  }
  return out;
}
