/**
 * Interrupt remapping (VT-d ch. 5, §9.10): the interrupt request formats, the interrupt
 * remapping table entry (IRTE) for remapped interrupts and the IRTA register. Each 128-bit
 * IRTE is two qwords, `lo` (bits 63:0) then `hi` (bits 127:64).
 */
import { bits, field } from "./field.ts";

/** Interrupt remapping table address register IRTA_REG at Reg.IRTA (VT-d §11.4). Acts only at GCMD.SIRTP. */
export const Irta = {
  /** Table base, 4 KiB aligned; bits at and above HAW are ignored. */
  IRTA: bits(63, 12),
  /** Extended interrupt mode (x2APIC): RsvdZ on a unit reporting ECAP.EIM = 0. */
  EIME: field(11),
  /** The table holds 2^(S + 1) entries. */
  S: field(0, 4),
} as const;

export const IRTE_SIZE = 16;
/** The largest interrupt remapping table: S = 15 gives 2^16 entries. */
export const MAX_INTERRUPT_ENTRIES = 65536;
/** ECAP.MHMV: the largest index mask (IM) an interrupt-entry-cache descriptor may carry. */
export const MHMV = 0xf;

/** IRTE for remapped interrupts, low qword (VT-d §9.10). */
export const IrteLo = {
  P: field(0),
  /** Fault processing disable: qualified interrupt faults through this entry are not recorded, even with P = 0. */
  FPD: field(1),
  /** Destination mode: 0 physical, 1 logical. */
  DM: field(2),
  /** Redirection hint. */
  RH: field(3),
  /** Trigger mode: 0 edge, 1 level. */
  TM: field(4),
  /** Delivery mode (DLM). */
  DLM: field(5, 3),
  /** Available to software; ignored by hardware. */
  AVAIL: field(8, 4),
  /** IRTE mode: 1 = posted format, which needs CAP.PI (reserved here). */
  IM: field(15),
  /** Vector. */
  V: field(16, 8),
  /** Destination id; in xAPIC mode (IRTA.EIME = 0) the APIC id is DST[15:8]. */
  DST: field(32, 32),
  /** Bits that must be 0 in a present entry whatever the mode (14:12, IM without CAP.PI, 31:24). */
  RESERVED: bits(15, 12) | bits(31, 24),
  /** Bits of DST that must be 0 in xAPIC mode: DST[7:0] (39:32) and DST[31:16] (63:48). */
  RESERVED_XAPIC: bits(39, 32) | bits(63, 48),
} as const;

/** IRTE for remapped interrupts, high qword (VT-d §9.10). */
export const IrteHi = {
  /** Source identifier the request is checked against (SVT). */
  SID: field(0, 16),
  /** Source-id qualifier (for SVT = 01): which low bits of the function number are ignored. */
  SQ: field(16, 2),
  /** Source validation type. */
  SVT: field(18, 2),
  RESERVED: bits(63, 20),
} as const;

/** IRTE.SVT encodings (VT-d §9.10). */
export enum SourceValidationType {
  None = 0,
  /** Requester id equal to SID under the SQ mask. */
  RequesterId = 1,
  /** Requester bus within [SID[15:8], SID[7:0]] (start bus, end bus). */
  BusRange = 2,
  Reserved = 3,
}

/** Delivery modes of the IRTE and of a compatibility-format MSI's data (Intel SDM §11.11.2). 3 and 6 are reserved. */
export enum DeliveryMode {
  Fixed = 0,
  LowestPriority = 1,
  Smi = 2,
  Nmi = 4,
  Init = 5,
  ExtInt = 7,
}

/** A remappable-format interrupt request's address (VT-d §5.1.2.2). Bits 31:20 are 0xFEE, 1:0 don't care. */
export const RemappableAddress = {
  /** handle[14:0]. */
  HANDLE: field(5, 15),
  /** Interrupt format: 1 remappable, 0 compatibility. */
  INTERRUPT_FORMAT: field(4),
  /** Subhandle valid: the index is handle + data[15:0]. */
  SHV: field(3),
  /** handle[15]. */
  HANDLE_15: field(2),
} as const;

/** A remappable-format interrupt request's data (VT-d §5.1.2.2). */
export const RemappableData = {
  SUBHANDLE: field(0, 16),
  RESERVED: bits(31, 16),
} as const;

/** A compatibility-format MSI (VT-d §5.1.2.1; Intel SDM §11.11): what the unit delivers after remapping. */
export const MsiAddress = {
  DESTINATION: field(12, 8),
  RH: field(3),
  DM: field(2),
} as const;
export const MsiData = {
  VECTOR: field(0, 8),
  DELIVERY_MODE: field(8, 3),
  /** Level: 1 = assert (an interrupt message always asserts). */
  LEVEL: field(14),
  TRIGGER_MODE: field(15),
} as const;
