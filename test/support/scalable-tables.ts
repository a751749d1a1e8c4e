/**
 * Builds scalable-mode tables (VT-d §9.2, §9.4-§9.6) in a GuestRam for tests, from the spec's
 * layouts, independent of the unit's walk: root entry halves, 256-bit context entries, PASID
 * directory and 512-bit PASID-table entries. Second-stage tables come from Tables.map.
 */
import type { GuestRam } from "../../src/vtd-device/index.ts";
import { Gcmd, Reg } from "../../src/spec/index.ts";
import { PasidGranularTranslationType } from "../../src/spec/scalable.ts";
import { Tables, type Machine } from "./tables.ts";

export interface ScalableContextOptions {
  present?: boolean;
  fpd?: boolean;
  pasidEnable?: boolean;
  /** Directory of 2^(pdts + 7) entries. */
  pdts?: number;
  ridPasid?: number;
  ridPriv?: boolean;
  /** Extra bits ORed into qwords 0..3. */
  extra?: readonly [bigint, bigint, bigint, bigint];
}

export interface PasidEntryOptions {
  present?: boolean;
  fpd?: boolean;
  pgtt?: PasidGranularTranslationType | number;
  /** Second-stage AW (levels aw + 2) and table (allocated when absent and pgtt is second-stage). */
  aw?: number;
  secondStageRoot?: number;
  firstStageRoot?: number;
  did?: number;
  sre?: boolean;
  wpe?: boolean;
  nxe?: boolean;
  /** FSPM (qword 2 bits 3:2). */
  fspm?: number;
  /** Extra bits ORed into qwords 0..7. */
  extra?: readonly bigint[];
}

export class ScalableTables extends Tables {
  constructor(ram: GuestRam, firstFree = 0x10_0000) {
    super(ram, firstFree);
  }

  /** The context table serving `sid` (the root entry half for its devfn made present). */
  smContextTable(sid: number): number {
    const entry = this.root + (sid >> 8) * 16 + ((sid & 0xff) >= 0x80 ? 8 : 0);
    const value = this.ram.read64(entry);
    if (value & 1n) return Number(value & 0x000f_ffff_ffff_f000n);
    const table = this.page();
    this.ram.write64(entry, BigInt(table) | 1n);
    return table;
  }

  smContextAt(sid: number): number {
    return this.smContextTable(sid) + (sid & 0x7f) * 32;
  }

  /** Writes the scalable-mode context entry of `sid`; returns its PASID directory (allocated). */
  smContext(sid: number, o: ScalableContextOptions = {}, directory = this.page()): number {
    const at = this.smContextAt(sid);
    const extra = o.extra ?? [0n, 0n, 0n, 0n];
    const q0 = BigInt(directory) | (BigInt(o.pdts ?? 0) << 9n) | (o.pasidEnable ? 8n : 0n) | (o.fpd ? 2n : 0n) | (o.present === false ? 0n : 1n) | extra[0];
    const q1 = BigInt(o.ridPasid ?? 0) | (o.ridPriv ? 1n << 20n : 0n) | extra[1];
    this.ram.write64(at + 8, q1);
    this.ram.write64(at + 16, extra[2]);
    this.ram.write64(at + 24, extra[3]);
    this.ram.write64(at, q0);
    return directory;
  }

  /** The PASID table for `pasid` under `directory` (its directory entry made present); FPD as given. */
  pasidTable(directory: number, pasid: number, fpd = false): number {
    const entry = directory + (pasid >>> 6) * 8;
    const value = this.ram.read64(entry);
    if (value & 1n) return Number(value & 0x000f_ffff_ffff_f000n);
    const table = this.page();
    this.ram.write64(entry, BigInt(table) | 1n | (fpd ? 2n : 0n));
    return table;
  }

  pasidEntryAt(directory: number, pasid: number): number {
    return this.pasidTable(directory, pasid) + (pasid & 0x3f) * 64;
  }

  /** Writes a PASID-table entry; returns the second-stage root (allocated for PGTT 010 unless given). */
  pasidEntry(directory: number, pasid: number, o: PasidEntryOptions = {}): number {
    const at = this.pasidEntryAt(directory, pasid);
    const pgtt = o.pgtt ?? PasidGranularTranslationType.SecondStage;
    const ss = o.secondStageRoot ?? (pgtt === PasidGranularTranslationType.SecondStage ? this.page() : 0);
    const extra = o.extra ?? [];
    const q = [
      BigInt(ss) | (BigInt(pgtt) << 6n) | (BigInt(o.aw ?? 1) << 2n) | (o.fpd ? 2n : 0n) | (o.present === false ? 0n : 1n),
      BigInt(o.did ?? 1),
      BigInt(o.firstStageRoot ?? 0) | (BigInt(o.fspm ?? 0) << 2n) | (o.nxe ? 0x20n : 0n) | (o.wpe ? 0x10n : 0n) | (o.sre ? 1n : 0n),
      0n, 0n, 0n, 0n, 0n,
    ];
    for (let i = 7; i >= 0; i--) this.ram.write64(at + i * 8, q[i]! | (extra[i] ?? 0n));
    return ss;
  }

  /** First-stage mapping (4-level IA-32e): `iova` → `output`, leaf at `leafLevel`, with `flags` (P is added; RW 2, US 4). */
  mapFirstStage(root: number, iova: number, output: number, flags: bigint, leafLevel = 1, tableFlags = 0x7n): number {
    let table = root;
    for (let level = 4; level > leafLevel; level--) {
      const entry = table + (Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512) * 8;
      let value = this.ram.read64(entry);
      if ((value & 1n) === 0n) {
        value = BigInt(this.page()) | tableFlags;
        this.ram.write64(entry, value);
      }
      table = Number(value & 0x000f_ffff_ffff_f000n);
    }
    const entry = table + (Math.floor(iova / 2 ** (12 + 9 * (leafLevel - 1))) % 512) * 8;
    this.ram.write64(entry, BigInt(output) | flags | 1n | (leafLevel > 1 ? 0x80n : 0n));
    return entry;
  }
}

/** RTADDR with TTM = `ttm` (01 scalable), SRTP, TE: scalable mode on. */
export function enableScalable(m: Machine, root: number, ttm = 1): void {
  m.device.writeRegister(Reg.RTADDR, 8, BigInt(root) | (BigInt(ttm) << 10n));
  m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
  m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
}
