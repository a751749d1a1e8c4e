/**
 * The root table (256 root entries, one per bus) and the context tables (256 context entries,
 * one per devfn) in legacy mode (VT-d §9.1, §9.3). Context tables are allocated when a device on
 * their bus is first attached. Stores are ordered so the unit never sees a present entry with
 * stale fields: the upper qword first, the lower (with P) last, then one flush.
 */
import { ContextHi, ContextLo, CONTEXT_ENTRY_SIZE, ROOT_ENTRY_SIZE, TranslationType } from "../spec/entries.ts";
import { TABLE_BYTES, type TableMemory } from "./table-memory.ts";

const P = 1;
const TT_SHIFT = 2 ** ContextLo.TT.shift;
const DID_SHIFT = 2 ** ContextHi.DID.shift;

export interface ContextSettings {
  /** Second-stage table root (ignored for pass-through). */
  tableRoot: number;
  /** Context AW: 1 = 39-bit 3-level, 2 = 48-bit 4-level. */
  aw: number;
  did: number;
  translationType: TranslationType;
}

export interface ContextEntryView {
  present: boolean;
  did: number;
  translationType: TranslationType;
  tableRoot: number;
}

export class RootContextTables {
  readonly root: number;
  private readonly contextTables = new Map<number, number>();

  constructor(private readonly tables: TableMemory) {
    this.root = tables.allocateTable();
  }

  private contextEntryAddress(sid: number): number | undefined {
    const table = this.contextTables.get(sid >> 8);
    return table === undefined ? undefined : table + (sid & 0xff) * CONTEXT_ENTRY_SIZE;
  }

  read(sid: number): ContextEntryView | undefined {
    const at = this.contextEntryAddress(sid);
    if (at === undefined) return undefined;
    const lo = this.tables.read(at);
    const hi = this.tables.read(at + 8);
    return {
      present: (lo & P) !== 0,
      did: Math.floor(hi / DID_SHIFT) & 0xffff,
      translationType: (Math.floor(lo / TT_SHIFT) & 3) as TranslationType,
      tableRoot: lo - (lo % TABLE_BYTES),
    };
  }

  /** Writes a present context entry for `sid` (the entry must be not-present). */
  write(sid: number, s: ContextSettings): void {
    const bus = sid >> 8;
    let table = this.contextTables.get(bus);
    if (table === undefined) {
      table = this.tables.allocateTable();
      this.contextTables.set(bus, table);
      const rootEntry = this.root + bus * ROOT_ENTRY_SIZE;
      this.tables.write(rootEntry, table + P);
      this.tables.flush(rootEntry, ROOT_ENTRY_SIZE);
    }
    const at = table + (sid & 0xff) * CONTEXT_ENTRY_SIZE;
    const root = s.translationType === TranslationType.PassThrough ? 0 : s.tableRoot;
    this.tables.write(at + 8, s.aw + s.did * DID_SHIFT);
    this.tables.write(at, root + s.translationType * TT_SHIFT + P);
    this.tables.flush(at, CONTEXT_ENTRY_SIZE);
  }

  /** Makes the entry not-present: P cleared first, then the rest. */
  clear(sid: number): void {
    const at = this.contextEntryAddress(sid);
    if (at === undefined) return;
    this.tables.write(at, 0);
    this.tables.write(at + 8, 0);
    this.tables.flush(at, CONTEXT_ENTRY_SIZE);
  }

  /** Every table page, for teardown. */
  pages(): number[] {
    return [this.root, ...this.contextTables.values()];
  }
}
