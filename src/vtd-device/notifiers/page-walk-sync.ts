/**
 * Keeping a shadow of an address space in step with the guest's second-stage tables, for MAP
 * notifiers: a walk that visits the guest's tables and the record of what was last reported
 * (record.ts) side by side over a range, reporting only differences: an unchanged leaf costs
 * two dword reads and one comparison, a changed one is reported as UNMAP then MAP, a removed
 * one as UNMAP once.
 *
 * The walk reads guest memory like the unit's own page walk (VT-d §3.6, §9.8) and applies the
 * same validity rules (paging-entry.ts: R/W accumulated level by level, reserved bits, superpage
 * sizes CAP.SLLPS allows), so it reports exactly what a DMA request would be allowed to use. It
 * never records a fault: an entry the unit would fault on (reserved bits, a table outside RAM)
 * counts as "nothing mapped" over its whole extent, so the shadow drops it, and is counted in
 * `badEntries`. Faults are recorded by DMA requests only, as the spec has it.
 *
 * Walk range rules: a slot only partly inside the range is handled whole when it is a leaf (a
 * superpage is reported with its size) or not present (everything recorded under it goes);
 * where a reported superpage has become a table (a split), its whole extent is re-walked, so
 * a page-selective invalidation of one page of a split superpage leaves the other pages mapped.
 *
 * Bounds (whatever the guest wrote in its tables, one sync does at most this much):
 * - shared tables: a sync may meet a table it has already walked (a table under several parent
 *   entries, or one pointing to itself) only while its table visits stay within
 *   SHARED_TABLE_FACTOR × the distinct tables it found; so it reads at most 512 × 2 × distinct
 *   entries and reports at most as many MAP events. Four aliased pages that would map 2^48
 *   bytes stop the sync at its third table visit;
 * - record size: the space's record holds at most `tableLimit` tables (RecordNodes), which also
 *   bounds the tables one sync visits;
 * - events: at most `eventBudget` MAP and UNMAP events per sync.
 * Past a bound the sync stops where it is and returns its WalkCut (one object per walker, nothing
 * allocated, nothing thrown); the caller unmaps the space whole and tells the embedder (notifiers.ts).
 */
import type { WalkConfig } from "../registers/capabilities.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { ENTRIES_PER_TABLE as ENTRIES, LEVEL_SIZE } from "../../spec/entries.ts";
import type { PagingEntryMasks } from "../translation/paging-entry.ts";
import { leafOutput, RecordNode, type SpaceRecord } from "./record.ts";
import { TableSet } from "./table-set.ts";
import type { WalkCutCause } from "./notifier-types.ts";

/** Receives the differences a walk finds. */
export interface SyncSink {
  map(iova: number, size: number, output: number, permission: number): void;
  unmap(iova: number, size: number, output: number): void;
}

/** Counters a walk keeps. */
export interface WalkCounters {
  /** Paging entries read (a measure of the walks' cost). */
  entriesWalked: number;
  /** Entries found unusable (reserved bits, outside RAM): treated as not mapped. */
  badEntries: number;
}

/** A sync may visit at most this many times as many tables as it finds distinct ones. */
export const SHARED_TABLE_FACTOR = 2;

/** What a sync returns when it went past a bound: the walker's one instance, filled in. */
export class WalkCut {
  cause: WalkCutCause = "table-limit";
  /** The bound passed: allowed table visits, tables in the record, or events. */
  limit = 0;
  /** Table visits, distinct tables and events of the sync when it was cut. */
  tablesVisited = 0;
  distinctTables = 0;
  events = 0;
}

export class PageWalkSync {
  /** Table visits of the running (or last) sync. */
  tablesVisited = 0;
  /** MAP and UNMAP events the running (or last) sync reported. */
  events = 0;
  private readonly masks: PagingEntryMasks;
  private readonly seen: TableSet;
  private readonly cut = new WalkCut();
  private sink: SyncSink | undefined;
  private record: SpaceRecord | undefined;
  private running = false;
  /** The running sync went past a bound: every loop returns at once. */
  private stopped = false;
  /** For a sync started while one runs (a notifier registering a MAP notifier elsewhere). */
  private nested: PageWalkSync | undefined;

  constructor(
    private readonly mem: MemoryAccess,
    private readonly cfg: WalkConfig,
    private readonly counters: WalkCounters,
    /** Tables (RecordNodes) one space's record may hold. */
    private readonly tableLimit: number,
    /** MAP and UNMAP events one sync may report. */
    private readonly eventBudget: number,
  ) {
    // The same rules as the unit's own walk.
    this.masks = cfg.entryMasks;
    this.seen = new TableSet(mem.memory.size);
  }

  /** Distinct tables the running (or last) sync met. */
  get distinctTables(): number {
    return this.seen.size;
  }

  /**
   * Brings `record` (of the tables at `tableRoot`, `levels` deep) up to date over [start, end),
   * telling `sink` every difference; with no sink the record is filled silently. Returns
   * undefined, or the WalkCut when the sync went past a bound (the record is then half updated:
   * the caller resets it).
   */
  sync(record: SpaceRecord, tableRoot: number, levels: number, start: number, end: number, sink: SyncSink | undefined): WalkCut | undefined {
    if (start >= end) return undefined;
    if (this.running) {
      const nested = (this.nested ??= new PageWalkSync(this.mem, this.cfg, this.counters, this.tableLimit, this.eventBudget));
      return nested.sync(record, tableRoot, levels, start, end, sink);
    }
    this.running = true;
    this.stopped = false;
    this.sink = sink;
    this.record = record;
    this.tablesVisited = 0;
    this.events = 0;
    this.seen.clear();
    try {
      if (this.enter(tableRoot)) this.walkLevel(tableRoot, levels, record.root, 0, start, end, 3);
    } finally {
      this.running = false;
      this.sink = undefined;
      this.record = undefined;
    }
    return this.stopped ? this.cut : undefined;
  }

  /** One more table visit: true within the shared-table bound, else the sync stops. */
  private enter(table: number): boolean {
    const visits = ++this.tablesVisited;
    if (this.seen.add(table) || visits <= SHARED_TABLE_FACTOR * this.seen.size) return true;
    return this.stop("shared-tables", SHARED_TABLE_FACTOR * this.seen.size);
  }

  private stop(cause: WalkCutCause, limit: number): false {
    const cut = this.cut;
    cut.cause = cause;
    cut.limit = limit;
    cut.tablesVisited = this.tablesVisited;
    cut.distinctTables = this.seen.size;
    cut.events = this.events;
    this.stopped = true;
    return false;
  }

  private walkLevel(table: number, level: number, node: RecordNode, base: number, start: number, end: number, inherited: number): void {
    const size = LEVEL_SIZE[level]!;
    const first = Math.floor((start - base) / size);
    const last = Math.floor((end - 1 - base) / size);
    const mem = this.mem;
    const counters = this.counters;
    counters.entriesWalked += last - first + 1;
    for (let i = first; i <= last; i++) {
      const at = table + i * 8;
      const lo = mem.read32(at), hi = mem.read32(at + 4);
      // 0: nothing usable; 1: a leaf; 2: a table.
      let kind = 0;
      let permission = 0;
      let address = 0;
      if (lo < 0 || hi < 0) {
        counters.badEntries++;
      } else {
        permission = inherited & lo & 3;
        if (permission !== 0) {
          const leaf = this.masks.isLeaf(level, lo);
          if (this.masks.isReserved(level, leaf, lo, hi)) {
            counters.badEntries++;
          } else {
            address = this.masks.address(lo, hi);
            kind = leaf ? 1 : 2;
          }
        }
      }
      const entryBase = base + i * size;
      const recorded = node.leaf[i]!;
      const child = node.child === undefined ? undefined : node.child[i];
      if (kind === 1) {
        const output = address - (address % size);
        const value = output + permission;
        if (recorded === value) continue;
        if (recorded !== 0) this.dropLeaf(node, i, entryBase, size, recorded);
        if (child !== undefined) this.dropChild(node, i, child, level - 1, entryBase);
        node.leaf[i] = value;
        node.used++;
        if (this.sink !== undefined) this.report(entryBase, size, output, permission);
      } else if (kind === 2) {
        let s = start > entryBase ? start : entryBase;
        let e = end < entryBase + size ? end : entryBase + size;
        if (recorded !== 0) {
          // A reported superpage became a table (a split): its whole extent is walked again.
          this.dropLeaf(node, i, entryBase, size, recorded);
          s = entryBase;
          e = entryBase + size;
        }
        // The bounds are checked before anything is allocated for the table.
        if (this.stopped || !this.enter(address)) return;
        let next = child;
        if (next === undefined) {
          const record = this.record!;
          if (record.tables >= this.tableLimit) return void this.stop("table-limit", this.tableLimit);
          record.tables++;
          next = new RecordNode();
          (node.child ??= new Array<RecordNode | undefined>(ENTRIES))[i] = next;
          node.used++;
        }
        // An emptied child is kept, as the guest keeps its emptied tables: no allocation per map/unmap.
        this.walkLevel(address, level - 1, next, entryBase, s, e, permission);
      } else {
        if (recorded !== 0) this.dropLeaf(node, i, entryBase, size, recorded);
        if (child !== undefined) this.dropChild(node, i, child, level - 1, entryBase);
      }
      if (this.stopped) return;
    }
  }

  /** A MAP to the sink, within the event budget. */
  private report(iova: number, size: number, output: number, permission: number): void {
    if (this.stopped) return;
    if (this.events === this.eventBudget) return void this.stop("event-budget", this.eventBudget);
    this.events++;
    this.sink!.map(iova, size, output, permission);
  }

  /** An UNMAP to the sink (if any), within the event budget. */
  private withdraw(iova: number, size: number, output: number): void {
    const sink = this.sink;
    if (sink === undefined || this.stopped) return;
    if (this.events === this.eventBudget) return void this.stop("event-budget", this.eventBudget);
    this.events++;
    sink.unmap(iova, size, output);
  }

  private dropLeaf(node: RecordNode, i: number, iova: number, size: number, recorded: number): void {
    node.leaf[i] = 0;
    node.used--;
    this.withdraw(iova, size, leafOutput(recorded));
  }

  private dropChild(node: RecordNode, i: number, child: RecordNode, level: number, base: number): void {
    node.child![i] = undefined;
    node.used--;
    this.record!.tables -= this.dropTree(child, level, base);
  }

  /** Withdraws every leaf recorded under `node` (a table at `level`); returns the nodes it held. */
  private dropTree(node: RecordNode, level: number, base: number): number {
    if (node.used === 0 || (node.child === undefined && this.sink === undefined)) return 1;
    let nodes = 1;
    const size = LEVEL_SIZE[level]!;
    for (let i = 0; i < ENTRIES; i++) {
      const value = node.leaf[i]!;
      if (value !== 0) {
        this.withdraw(base + i * size, size, leafOutput(value));
        continue;
      }
      const child = node.child === undefined ? undefined : node.child[i];
      if (child !== undefined) nodes += this.dropTree(child, level - 1, base + i * size);
    }
    return nodes;
  }
}
