/**
 * Scalable-mode tables (RTADDR.TTM = 01; VT-d §9.2, §9.4-§9.6): the root table (each root entry
 * two halves: devfn 0-127 and 128-255), 256-bit context entries (128 per 4 KiB table), and per
 * device a PASID directory (PDTS 0: 128 entries, PASIDs 0..8191) with 4 KiB PASID tables of 64
 * 512-bit entries. Tables are allocated when first needed and kept until teardown. Stores are
 * ordered so the unit never sees a present entry with stale fields: the other qwords first, the
 * qword holding P last, then one flush (ECAP.C = 0); P is cleared first when an entry goes.
 */
import { PasidEntryQ0, PasidEntryQ1, PASID_DIRECTORY_ENTRY_SIZE, PASID_ENTRY_SIZE, PASID_TABLE_INDEX_BITS,
  PasidGranularTranslationType, PDTS_BASE, SM_CONTEXT_ENTRY_SIZE, SM_DEVFN_UPPER, SM_ROOT_ENTRY_SIZE, SmContextHi, SmContextLo } from "../spec/scalable.ts";
import { VtdDriverError } from "./errors.ts";
import type { TableMemory } from "./table-memory.ts";

const P = 1;
const QWORD = 8;
const PGTT_SHIFT = 2 ** PasidEntryQ0.PGTT.shift;
const AW_SHIFT = 2 ** PasidEntryQ0.AW.shift;
const DID_MASK = 2 ** PasidEntryQ1.DID.width - 1;
const DTE = 2 ** SmContextLo.DTE.shift;
const PASID_QWORDS = PASID_ENTRY_SIZE / QWORD;
/** PDTS 0: a directory of 2^7 entries (1 KiB of its 4 KiB page), PASIDs below 2^(7 + 6). */
const PDTS = 0;
const DIRECTORY_PASIDS = 2 ** (PDTS + PDTS_BASE + PASID_TABLE_INDEX_BITS);
const RID_PASID_SHIFT = 2 ** SmContextHi.RID_PASID.shift;
/** DID is qword 1 bits 15:0; FSPTPTR qword 2 bits 63:12 (PasidEntryQ2), the table's address as it is. */
const DID_QWORD = 1, FSPTPTR_QWORD = 2;

export interface PasidEntrySettings {
  pgtt: PasidGranularTranslationType;
  did: number;
  /** Second-stage AW (levels aw + 2); Linux writes the unit's for the other types too. */
  aw: number;
  /** SSPTPTR (second stage) or FSPTPTR (first stage); ignored for pass-through. */
  tableRoot: number;
}

export interface PasidEntryView {
  present: boolean;
  did: number;
  pgtt: number;
}

interface DeviceTables {
  directory: number;
  pasidTables: Map<number, number>;
}

export class ScalableModeTables {
  readonly root: number;
  /** Context tables by bus * 2 + (devfn >= 128). */
  private readonly contextTables = new Map<number, number>();
  private readonly devices = new Map<number, DeviceTables>();

  constructor(private readonly tables: TableMemory) {
    this.root = tables.allocateTable();
  }

  /** Writes `sid`'s PASID-table entry for `pasid` (it must be not-present), its directory and table allocated as needed. */
  writePasidEntry(sid: number, pasid: number, s: PasidEntrySettings): void {
    const at = this.pasidEntryAddress(sid, pasid, true)!;
    const q0 = (s.pgtt === PasidGranularTranslationType.SecondStage ? s.tableRoot : 0) + s.pgtt * PGTT_SHIFT + s.aw * AW_SHIFT + P;
    for (let q = PASID_QWORDS - 1; q >= 1; q--) {
      const value = q === DID_QWORD ? s.did & DID_MASK : q === FSPTPTR_QWORD && s.pgtt === PasidGranularTranslationType.FirstStage ? s.tableRoot : 0;
      this.tables.write(at + q * QWORD, value);
    }
    this.tables.write(at, q0);
    this.tables.flush(at, PASID_ENTRY_SIZE);
  }

  readPasidEntry(sid: number, pasid: number): PasidEntryView | undefined {
    const at = this.pasidEntryAddress(sid, pasid, false);
    if (at === undefined) return undefined;
    const q0 = this.tables.read(at);
    return { present: (q0 & P) !== 0, did: this.tables.read(at + DID_QWORD * QWORD) & DID_MASK, pgtt: Math.floor(q0 / PGTT_SHIFT) & 7 };
  }

  /** Makes the PASID-table entry not-present: P cleared first, then the rest. */
  clearPasidEntry(sid: number, pasid: number): void {
    const at = this.pasidEntryAddress(sid, pasid, false);
    if (at === undefined) return;
    for (let q = 0; q < PASID_QWORDS; q++) this.tables.write(at + q * QWORD, 0);
    this.tables.flush(at, PASID_ENTRY_SIZE);
  }

  /** Writes `sid`'s context entry (must be not-present): its PASID directory, RID_PASID, DTE with a device-TLB. */
  writeContext(sid: number, ridPasid: number, deviceTlb: boolean): void {
    const device = this.device(sid);
    const at = this.contextEntryAddress(sid, true)!;
    this.tables.write(at + 3 * QWORD, 0);
    this.tables.write(at + 2 * QWORD, 0);
    this.tables.write(at + QWORD, ridPasid * RID_PASID_SHIFT);
    this.tables.write(at, device.directory + PDTS * 2 ** SmContextLo.PDTS.shift + (deviceTlb ? DTE : 0) + P);
    this.tables.flush(at, SM_CONTEXT_ENTRY_SIZE);
  }

  /** Makes the context entry not-present: P cleared first. */
  clearContext(sid: number): void {
    const at = this.contextEntryAddress(sid, false);
    if (at === undefined) return;
    for (let q = 0; q < SM_CONTEXT_ENTRY_SIZE / QWORD; q++) this.tables.write(at + q * QWORD, 0);
    this.tables.flush(at, SM_CONTEXT_ENTRY_SIZE);
  }

  /** Every table page, for teardown and the ECAP.C checks. */
  pages(): number[] {
    const out = [this.root, ...this.contextTables.values()];
    for (const d of this.devices.values()) out.push(d.directory, ...d.pasidTables.values());
    return out;
  }

  private contextEntryAddress(sid: number, create: boolean): number | undefined {
    const devfn = sid & 0xff;
    const upper = devfn >= SM_DEVFN_UPPER ? 1 : 0;
    const key = (sid >> 8) * 2 + upper;
    let table = this.contextTables.get(key);
    if (table === undefined) {
      if (!create) return undefined;
      table = this.tables.allocateTable();
      this.contextTables.set(key, table);
      const half = this.root + (sid >> 8) * SM_ROOT_ENTRY_SIZE + upper * QWORD;
      this.tables.write(half, table + P);
      this.tables.flush(half, QWORD);
    }
    return table + (devfn & 0x7f) * SM_CONTEXT_ENTRY_SIZE;
  }

  private device(sid: number): DeviceTables {
    let d = this.devices.get(sid);
    if (!d) {
      d = { directory: this.tables.allocateTable(), pasidTables: new Map() };
      this.devices.set(sid, d);
    }
    return d;
  }

  private pasidEntryAddress(sid: number, pasid: number, create: boolean): number | undefined {
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= DIRECTORY_PASIDS) throw new VtdDriverError("bad-argument", `PASID ${String(pasid)}: expected 0..${DIRECTORY_PASIDS - 1}`);
    const d = create ? this.device(sid) : this.devices.get(sid);
    if (!d) return undefined;
    const index = pasid >>> PASID_TABLE_INDEX_BITS;
    let table = d.pasidTables.get(index);
    if (table === undefined) {
      if (!create) return undefined;
      table = this.tables.allocateTable();
      d.pasidTables.set(index, table);
      const entry = d.directory + index * PASID_DIRECTORY_ENTRY_SIZE;
      this.tables.write(entry, table + P);
      this.tables.flush(entry, PASID_DIRECTORY_ENTRY_SIZE);
    }
    return table + (pasid % 2 ** PASID_TABLE_INDEX_BITS) * PASID_ENTRY_SIZE;
  }
}
