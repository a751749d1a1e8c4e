/**
 * Root, context and second-stage paging entries in legacy mode (VT-d §9.1, §9.3, §9.8).
 * Each 128-bit entry is two qwords, `lo` (bits 63:0) then `hi` (bits 127:64).
 */
import { bit, bits, field } from "./field.ts";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const ROOT_ENTRY_SIZE = 16;
export const CONTEXT_ENTRY_SIZE = 16;
export const PAGING_ENTRY_SIZE = 8;
export const ENTRIES_PER_TABLE = 512;
/** Bits of the input address that index one second-stage table level. */
export const LEVEL_STRIDE = 9;

/** Root entry (VT-d §9.1). */
export const RootLo = {
  P: field(0),
  CTP: bits(63, 12),
  /** Reserved below the HAW; bits ≥ HAW are reserved too. */
  RESERVED: bits(11, 1),
} as const;

/** Context entry (VT-d §9.3). */
export const ContextLo = {
  P: field(0),
  FPD: field(1),
  TT: field(2, 2),
  SLPTPTR: bits(63, 12),
  RESERVED: bits(11, 4),
} as const;
export const ContextHi = {
  AW: field(0, 3),
  AVAIL: field(3, 4),
  DID: field(8, 16),
  RESERVED: bit(7) | bits(63, 24),
} as const;

/** Translation types of a legacy context entry (VT-d §9.3). */
export enum TranslationType {
  Untranslated = 0,
  DeviceTlb = 1,
  PassThrough = 2,
  Reserved = 3,
}

/** Second-stage paging entry bits (VT-d §9.8). */
export const Pte = {
  R: bit(0),
  W: bit(1),
  /** Page size: a 2 MiB leaf in a PDE, a 1 GiB leaf in a PDPE. */
  PS: bit(7),
  SNP: bit(11),
  ADDR: bits(51, 12),
  /** Bit 62: TM in older revisions, IW (reserved unless SSIRWE) in rev 5. */
  IW: bit(62),
} as const;

/** Bytes one entry covers at each level (index = level): 4 KiB PTE, 2 MiB PDE, 1 GiB PDPE, 512 GiB PML4E, PML5E. */
export const LEVEL_SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48] as const;

/** Page sizes of leaves by level: level 1 is the 4 KiB PTE, level 2 a 2 MiB PDE, level 3 a 1 GiB PDPE. */
export function levelPageShift(level: number): number {
  return PAGE_SHIFT + LEVEL_STRIDE * (level - 1);
}

/** Context AW value n ⇔ SAGAW bit n ⇔ address width 30 + 9n ⇔ n + 2 levels. */
export function awWidth(aw: number): number {
  return 30 + 9 * aw;
}
export function awLevels(aw: number): number {
  return aw + 2;
}

/** Interrupt address range: DMA writes here are interrupt requests, never memory (VT-d §3.14). */
export const INTERRUPT_RANGE_BASE = 0xfee0_0000;
export const INTERRUPT_RANGE_LIMIT = 0xfeef_ffff;
