/**
 * What makes a second-stage paging entry usable (VT-d §9.8, legacy mode), in one place for every
 * walk that reads the guest's tables: the unit's translation walk, the notifiers' sync walk and
 * the strict checker's reference walks. Entries are read as two dwords, `lo` (bits 31:0) and
 * `hi` (bits 63:32); the masks are dword masks.
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";

/** Permission bits as walks accumulate them (the entry's R and W). */
export const PERMISSION_READ = 1;
export const PERMISSION_WRITE = 2;

/** The PS bit: a leaf at level 2 (2 MiB) or 3 (1 GiB). */
const PAGE_SIZE_BIT = 0x80;

/** Masks of an entry's upper dword for a unit with `awBits` address bits (HAW = MGAW + 1 here). */
export class PagingEntryMasks {
  /** Address bits 63:32 below the HAW. */
  readonly hiAddress: number;
  /** Bits 51:HAW, and bit 62 (IW/TM, reserved in legacy mode). */
  readonly hiReserved: number;
  /** CAP.SLLPS: bit 0 = 2 MiB leaves, bit 1 = 1 GiB leaves. */
  readonly sllps: number;

  constructor(awBits: number, sllps: number) {
    this.hiAddress = upperAddressMask(awBits);
    this.hiReserved = ((0x000f_ffff & ~this.hiAddress) | 0x4000_0000) >>> 0;
    this.sllps = sllps;
  }

  /** The entry at `level` with low dword `lo` ends the walk (a PTE, or a PDE/PDPE with PS = 1). */
  isLeaf(level: number, lo: number): boolean {
    return level === 1 || ((lo & PAGE_SIZE_BIT) !== 0 && (level === 2 || level === 3));
  }

  /** True when a present entry has a reserved bit set (then it faults with LSL.2 / reason 0xC). */
  isReserved(level: number, leaf: boolean, lo: number, hi: number): boolean {
    let reservedLo: number;
    if (level === 1) reservedLo = 0x800;
    // Non-leaf: bit 11 (and PS at levels 4 and 5, where it is reserved).
    else if (!leaf) reservedLo = level >= 4 ? 0x880 : 0x800;
    // A superpage the unit does not support is a PS bit set where it is reserved; a supported
    // one has its address bits below the page size reserved.
    else if (level === 2) reservedLo = this.sllps & 1 ? 0x1f_f800 : PAGE_SIZE_BIT;
    else reservedLo = this.sllps & 2 ? 0x3fff_f800 : PAGE_SIZE_BIT;
    return (lo & reservedLo) !== 0 || (hi & this.hiReserved) !== 0;
  }

  /**
   * The 4 KiB-aligned address below the HAW that two dwords hold: a paging entry's next table or
   * leaf output (before alignment to its size), and likewise RTADDR, IQA, IRTA and descriptors' ADDR.
   */
  address(lo: number, hi: number): number {
    return (hi & this.hiAddress) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0);
  }
}

/** Address bits 63:32 below the HAW, for root and context entries as for paging entries. */
export function upperAddressMask(awBits: number): number {
  return (1 << (awBits - 32)) - 1;
}
