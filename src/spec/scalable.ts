/**
 * Scalable mode (RTADDR.TTM = 01): root, context, PASID-directory and PASID-table entries
 * (VT-d 5.10 §9.2, §9.4, §9.5, §9.6), the PASID-granular descriptors (§6.5.2.2-§6.5.2.6) and
 * the scalable-mode fault reasons (§7.1.3, 30h-90h). Numbers only. Entries are given as dwords
 * of the structure in memory: `w[i]` is bits 32·i+31..32·i.
 */
import { bits, field } from "./field.ts";

/** RTADDR.TTM encodings (VT-d §11.4.6). */
export enum TranslationTableMode {
  Legacy = 0,
  Scalable = 1,
  /** Reserved in rev 5 (was the v2.x extended mode). */
  Reserved = 2,
  /** Abort-DMA mode: needs ECAP.ADMS (not offered). */
  AbortDma = 3,
}

/** PASIDs are 20 bits on the bus (PCIe PASID TLP prefix). */
export const PASID_BITS_MAX = 20;
export const PASID_LIMIT = 2 ** PASID_BITS_MAX;
/** A request without a PASID (its translation uses the context entry's RID_PASID). */
export const NO_PASID = -1;

/** Scalable-mode root entry (§9.2): one half per devfn range, 64 bits each. */
export const SM_ROOT_ENTRY_SIZE = 16;
export const SmRootHalf = {
  /** LP (bits 63:0) / UP (bits 127:64). */
  P: field(0),
  RESERVED: bits(11, 1),
  /** LCTP / UCTP: a 4 KiB table of 128 scalable-mode context entries. */
  CTP: bits(63, 12),
} as const;
/** devfn 0-127 use the lower half, 128-255 the upper half. */
export const SM_DEVFN_UPPER = 0x80;

/** Scalable-mode context entry, 256 bits (§9.4). */
export const SM_CONTEXT_ENTRY_SIZE = 32;
export const SmContextLo = {
  P: field(0),
  FPD: field(1),
  /** Device-TLB enable (needs ECAP.DT). */
  DTE: field(2),
  /** Requests-with-PASID allowed. */
  PASIDE: field(3),
  /** Page requests enable (needs ECAP.PRS, not offered). */
  PRE: field(4),
  RESERVED: bits(8, 5),
  /** PASID directory of 2^(PDTS + 7) entries. */
  PDTS: field(9, 3),
  PASIDDIRPTR: bits(63, 12),
} as const;
/** Bits 127:64 of the context entry. */
export const SmContextHi = {
  RID_PASID: field(0, 20),
  /** Requests-without-PASID are supervisor requests (needs ECAP.SRS). */
  RID_PRIV: field(20),
  RESERVED: bits(63, 21),
} as const;
/** Bits 255:128 of the context entry are reserved. */
export const PDTS_BASE = 7;

/** PASID directory entry, 64 bits, indexed by PASID[19:6] (§9.5). */
export const PASID_DIRECTORY_ENTRY_SIZE = 8;
export const PasidDirectoryEntry = {
  P: field(0),
  FPD: field(1),
  RESERVED: bits(11, 2),
  /** SMPTBLPTR: a 4 KiB table of 64 PASID-table entries. */
  PTBLPTR: bits(63, 12),
} as const;
/** PASID[5:0] index the PASID table; PASID[19:6] the directory. */
export const PASID_TABLE_INDEX_BITS = 6;

/** PASID-table entry, 512 bits (§9.6). Qword 0: */
export const PASID_ENTRY_SIZE = 64;
export const PasidEntryQ0 = {
  P: field(0),
  FPD: field(1),
  /** Second-stage address width, as the legacy context entry's AW. */
  AW: field(2, 3),
  /** SSEE (needs ECAP.ERS, not offered): reserved here. */
  SSEE: field(5),
  PGTT: field(6, 3),
  /** SSADE (needs ECAP.SSADS, not offered): reserved here. */
  SSADE: field(9),
  RESERVED: bits(11, 10),
  SSPTPTR: bits(63, 12),
} as const;
/** Qword 1. */
export const PasidEntryQ1 = {
  DID: field(0, 16),
  RESERVED: bits(22, 16),
} as const;
/** Qword 2. */
export const PasidEntryQ2 = {
  /** Supervisor requests allowed through first-stage translation. */
  SRE: field(0),
  ERE: field(1),
  /** First-stage paging mode: 00 4-level, 01 5-level (needs CAP.FS5LP, not offered). */
  FSPM: field(2, 2),
  WPE: field(4),
  NXE: field(5),
  SMEP: field(6),
  EAFE: field(7),
  RESERVED: bits(11, 8),
  FSPTPTR: bits(63, 12),
} as const;
/** Qwords 3-7 (bits 511:192) are reserved. */

/** PASID-granular translation type (PASID-table entry PGTT, §9.6). */
export enum PasidGranularTranslationType {
  FirstStage = 1,
  SecondStage = 2,
  /** Nested: not offered (ECAP.NEST = 0), an invalid entry. */
  Nested = 3,
  PassThrough = 4,
}

/** First-stage paging entries (IA-32e format, §9.7). */
export const FirstStagePte = {
  P: 0x1,
  RW: 0x2,
  US: 0x4,
  A: 0x20,
  D: 0x40,
  PS: 0x80,
  /** XD: bit 63, the high dword's bit 31. */
  XD_HI: 0x8000_0000,
} as const;

/** 256-bit descriptor types of scalable mode (type = lo[3:0] | lo[11:9] << 4, §6.5.2). */
export enum ScalableDescriptorType {
  PasidIotlb = 6,
  PasidCache = 7,
  PasidDeviceTlb = 8,
}
export const DESCRIPTOR_SIZE_256 = 32;

/** PASID-cache invalidation descriptor (§6.5.2.2), low qword. */
export const PasidCacheDesc = {
  /** 00 domain-selective, 01 PASID-selective within a domain, 11 global. */
  G: field(4, 2),
  DID: field(16, 16),
  PASID: field(32, 20),
  RESERVED_LO: bits(63, 52) | bits(15, 12) | bits(8, 6),
} as const;
export const PasidCacheGranularity = { Domain: 0, Pasid: 1, Reserved: 2, Global: 3 } as const;

/** PASID-based IOTLB invalidation descriptor (§6.5.2.4). */
export const PasidIotlbDesc = {
  /** 10 every non-global entry of a PASID in a domain, 11 page-selective within a PASID; 00, 01 reserved. */
  G: field(4, 2),
  DID: field(16, 16),
  PASID: field(32, 20),
  RESERVED_LO: bits(63, 52) | bits(15, 12) | bits(8, 6),
  /** High qword: */
  AM: field(0, 6),
  IH: field(6),
  ADDR: bits(63, 12),
  RESERVED_HI: bits(11, 7),
} as const;
export const PasidIotlbGranularity = { Pasid: 2, Page: 3 } as const;

/** PASID-based device-TLB invalidation descriptor (§6.5.2.6). */
export const PasidDeviceTlbDesc = {
  MIP: field(4, 5),
  /** PFSID[3:0] and PFSID[15:4]: reserved without ECAP.DIT (not offered). */
  PFSID_LO: field(12, 4),
  SID: field(16, 16),
  PASID: field(32, 20),
  PFSID_HI: field(52, 12),
  RESERVED_LO: bits(15, 12) | bits(63, 52),
  /** High qword: G (every PASID and requests without PASID), S (size encoded in ADDR), ADDR. */
  G: field(0),
  S: field(11),
  ADDR: bits(63, 12),
  RESERVED_HI: bits(10, 1),
} as const;
