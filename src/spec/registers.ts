/**
 * The VT-d register map (VT-d §11.4): offsets and bit fields. Numbers only; the device's
 * register table (reset values and masks per configuration) is built from these in
 * src/vtd-device/registers/register-table.ts.
 */
import { bit, bits, field } from "./field.ts";

/** Register offsets from the unit's base. IVA/IOTLB and FRCD move with ECAP.IRO and CAP.FRO. */
export const Reg = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  AFLOG: 0x58,
  PMEN: 0x64,
  PLMBASE: 0x68,
  PLMLIMIT: 0x6c,
  PHMBASE: 0x70,
  PHMLIMIT: 0x78,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IQERCD: 0xb0,
  IRTA: 0xb8,
} as const;

/** ECAP.IRO and CAP.FRO used by this unit (the same as QEMU's): IVA at 0xF0, IOTLB at 0xF8, FRCD0 at 0x220. */
export const IRO = 0xf;
export const FRO = 0x22;
export const IVA_OFFSET = IRO * 16;
export const IOTLB_OFFSET = IRO * 16 + 8;
export const FRCD_OFFSET = FRO * 16;
export const FRCD_SIZE = 16;
/** VER: major 1, minor 0 (VT-d §11.4.1). Major ≥ 6 would refuse register-based invalidation. */
export const VERSION = 0x10;
export const MAX_FAULT_RECORDS = 256;

/** Capability register (VT-d §11.4.2). */
export const Cap = {
  ND: field(0, 3),
  AFL: field(3),
  RWBF: field(4),
  PLMR: field(5),
  PHMR: field(6),
  CM: field(7),
  SAGAW: field(8, 5),
  MGAW: field(16, 6),
  ZLR: field(22),
  FRO: field(24, 10),
  SLLPS: field(34, 2),
  PSI: field(39),
  NFR: field(40, 8),
  MAMV: field(48, 6),
  DWD: field(54),
  DRD: field(55),
  FL1GP: field(56),
  PI: field(59),
  FL5LP: field(60),
  ECMDS: field(61),
  ESIRTPS: field(62),
  ESRTPS: field(63),
} as const;

/** SAGAW bit n ⇔ AGAW 30 + 9n ⇔ context AW value n ⇔ n + 2 levels (VT-d §11.4.2, §9.3). */
export const SAGAW_39_BIT = 0x2;
export const SAGAW_48_BIT = 0x4;
/** SLLPS bit 0: 2 MiB pages, bit 1: 1 GiB pages. */
export const SLLPS_2M = 0x1;
export const SLLPS_1G = 0x2;
/** Maximum address mask value this unit accepts (QEMU: 18, enough for 1 GiB pages). */
export const MAMV = 18;
/** Domain-id width 4 + 2·ND; ND = 6 gives 16-bit domain ids. */
export const ND = 6;

/** Extended capability register (VT-d §11.4.3). */
export const Ecap = {
  C: field(0),
  QI: field(1),
  DT: field(2),
  IR: field(3),
  EIM: field(4),
  PT: field(6),
  SC: field(7),
  IRO: field(8, 10),
  MHMV: field(20, 4),
  /** Nested translation (PGTT 011); never offered by this unit. */
  NEST: field(26),
  PRS: field(29),
  ERS: field(30),
  /** Supervisor requests (requests-with-PASID with PR = 1). */
  SRS: field(31),
  /** PASID size supported: PASIDs of PSS + 1 bits (VT-d §11.4.3). */
  PSS: field(35, 5),
  PASID: field(40),
  SMTS: field(43),
  /** Second-stage translation in scalable mode (SLTS in older revisions). */
  SSTS: field(46),
  /** First-stage translation (FLTS in older revisions). */
  FSTS: field(47),
} as const;

/** GCMD and GSTS share bit positions (VT-d §11.4.4, §11.4.5). */
export const Gcmd = {
  TE: bit(31),
  SRTP: bit(30),
  SFL: bit(29),
  EAFL: bit(28),
  WBF: bit(27),
  QIE: bit(26),
  IRE: bit(25),
  SIRTP: bit(24),
  CFI: bit(23),
} as const;
export const Gsts = {
  TES: bit(31),
  RTPS: bit(30),
  FLS: bit(29),
  AFLS: bit(28),
  WBFS: bit(27),
  QIES: bit(26),
  IRES: bit(25),
  IRTPS: bit(24),
  CFIS: bit(23),
} as const;
/** GSTS bits a driver may copy into GCMD: everything but the one-shot status bits (VT-d §11.4.4). */
export const GSTS_PERSISTENT_MASK = 0x96ff_ffffn;
export const GCMD_ONE_SHOT = Gcmd.SRTP | Gcmd.SFL | Gcmd.WBF | Gcmd.SIRTP;

/** Root table address (VT-d §11.4.6). */
export const Rtaddr = {
  RTA: bits(63, 12),
  TTM: field(10, 2),
} as const;

/** Context command register (VT-d §11.4.7.1). */
export const Ccmd = {
  ICC: field(63),
  CIRG: field(61, 2),
  CAIG: field(59, 2),
  FM: field(32, 2),
  SID: field(16, 16),
  DID: field(0, 16),
} as const;
/** Granularity encodings shared by CIRG/CAIG, IIRG/IAIG and the descriptors' G fields. */
export const Granularity = { Refused: 0, Global: 1, Domain: 2, Device: 3, Page: 3 } as const;

/** IOTLB invalidate register at IRO·16 + 8 (VT-d §11.4.8.1). */
export const Iotlb = {
  IVT: field(63),
  IIRG: field(60, 2),
  IAIG: field(57, 2),
  DR: field(49),
  DW: field(48),
  DID: field(32, 16),
} as const;

/** Invalidate address register at IRO·16 (VT-d §11.4.8.2). */
export const Iva = {
  ADDR: bits(63, 12),
  IH: field(6),
  AM: field(0, 6),
} as const;

/** Fault status (VT-d §11.4.9.1). */
export const Fsts = {
  PFO: bit(0),
  PPF: bit(1),
  AFO: bit(2),
  APF: bit(3),
  IQE: bit(4),
  ICE: bit(5),
  ITE: bit(6),
  FRI: field(8, 8),
} as const;
/** The conditions whose first occurrence raises a fault event (VT-d §7.3.1). */
export const FSTS_EVENT_CONDITIONS = Fsts.PFO | Fsts.PPF | Fsts.IQE | Fsts.ICE | Fsts.ITE;

/** Fault event control, and the identical invalidation event control (VT-d §11.4.9.2, §11.4.9.9). */
export const EventControl = {
  IM: bit(31),
  IP: bit(30),
} as const;

/** Invalidation completion status (VT-d §11.4.9.8). */
export const Ics = { IWC: bit(0) } as const;

/** Invalidation queue registers (VT-d §11.4.9.1-3). */
export const Iqa = {
  IQA: bits(63, 12),
  DW: field(11),
  QS: field(0, 3),
} as const;
export const IQ_HEAD_TAIL_MASK = bits(18, 4);

/** Protected memory enable (VT-d §11.4.10). */
export const Pmen = { EPM: bit(31), PRS: bit(0) } as const;

/** Fault recording register, 128 bits as two qwords (VT-d §11.4.11). */
export const FrcdLo = { FI: bits(63, 12) } as const;
export const FrcdHi = {
  F: field(63),
  T1: field(62),
  AT: field(60, 2),
  PV: field(40, 20),
  FR: field(32, 8),
  PP: field(31),
  EXE: field(30),
  PRIV: field(29),
  T2: field(28),
  SID: field(0, 16),
} as const;
