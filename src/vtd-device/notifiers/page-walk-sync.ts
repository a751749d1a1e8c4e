/**
 * Keeping a shadow of an address space in step with the guest's second-stage tables, for MAP
 * notifiers: a record of what was last reported, shaped like the tables themselves (one node
 * per guest table, 512 slots, each slot a leaf or a child node), and a walk that visits the
 * guest's tables and the record side by side over a range, reporting only differences:
 * an unchanged leaf costs two dword reads and one comparison, a changed one is reported as
 * UNMAP then MAP, a removed one as UNMAP once.
 *
 * The walk reads guest memory like the unit's own page walk (VT-d §3.6, §9.8) and applies the
 * same validity rules (R/W accumulated level by level, reserved bits, superpage sizes CAP.SLLPS
 * allows), so it reports exactly what a DMA request would be allowed to use. It never records
 * a fault and never throws: an entry the unit would fault on (reserved bits, a table outside
 * RAM) counts as "nothing mapped" over its whole extent, so the shadow drops it, and is counted
 * in `badEntries`. Faults are recorded by DMA requests only, as the spec has it.
 *
 * Walk range rules: a slot only partly inside the range is handled whole when it is a leaf (a
 * superpage is reported with its size) or not present (everything recorded under it goes);
 * where a reported superpage has become a table (a split), its whole extent is re-walked, so
 * a page-selective invalidation of one page of a split superpage leaves the other pages mapped.
 */
import type { WalkConfig } from "../registers/capabilities.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { ENTRIES_PER_TABLE as ENTRIES, LEVEL_SIZE } from "../../spec/entries.ts";
import type { PagingEntryMasks } from "../translation/paging-entry.ts";

/** What was last reported for one guest table. */
export class RecordNode {
  /** Per slot: 0 = nothing, else a reported leaf as output + permission (outputs are 4 KiB aligned). */
  readonly leaf = new Float64Array(ENTRIES);
  /** Per slot (levels ≥ 2): the record of the table the slot pointed to. */
  child: (RecordNode | undefined)[] | undefined;
  /** Slots holding a leaf or a child (possibly empty). */
  used = 0;
}

/** True when the record holds at least one leaf. */
export function hasLeaf(node: RecordNode): boolean {
  if (node.used === 0) return false;
  for (let i = 0; i < ENTRIES; i++) if (node.leaf[i] !== 0) return true;
  if (node.child) for (const child of node.child) if (child !== undefined && hasLeaf(child)) return true;
  return false;
}

/** Receives the differences a walk finds. */
export interface SyncSink {
  map(iova: number, size: number, output: number, permission: number): void;
  unmap(iova: number, size: number, output: number): void;
}

export type LeafVisitor = (iova: number, size: number, output: number, permission: number) => void;

function leafOutput(value: number): number {
  return value - (value % 4096);
}

/** Counters a walk keeps. */
export interface WalkCounters {
  /** Paging entries read (a measure of the walks' cost). */
  entriesWalked: number;
  /** Entries found unusable (reserved bits, outside RAM): treated as not mapped. */
  badEntries: number;
}

/** Thrown (one shared object, no allocation) when a sync visits more tables than it may. */
export const WALK_LIMIT_REACHED = { walkLimitReached: true } as const;

export class PageWalkSync {
  /** Tables visited by the running sync. */
  tablesVisited = 0;
  private readonly masks: PagingEntryMasks;
  private sink: SyncSink | undefined;

  constructor(
    private readonly mem: MemoryAccess,
    cfg: WalkConfig,
    private readonly counters: WalkCounters,
    /** Tables one sync may visit; past it the sync throws WALK_LIMIT_REACHED. */
    private readonly tableLimit: number,
  ) {
    // The same rules as the unit's own walk.
    this.masks = cfg.entryMasks;
  }

  /**
   * Brings `record` (of the tables at `tableRoot`, `levels` deep) up to date over [start, end),
   * telling `sink` every difference; with no sink the record is filled silently. Throws
   * WALK_LIMIT_REACHED after `tableLimit` tables, the record then half updated.
   */
  sync(record: RecordNode, tableRoot: number, levels: number, start: number, end: number, sink: SyncSink | undefined): void {
    if (start >= end) return;
    const previous = this.sink;
    this.sink = sink;
    this.tablesVisited = 0;
    try {
      this.walkLevel(tableRoot, levels, record, 0, start, end, 3);
    } finally {
      this.sink = previous;
    }
  }

  private walkLevel(table: number, level: number, node: RecordNode, base: number, start: number, end: number, inherited: number): void {
    if (++this.tablesVisited > this.tableLimit) throw WALK_LIMIT_REACHED;
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
        this.sink?.map(entryBase, size, output, permission);
      } else if (kind === 2) {
        let s = start > entryBase ? start : entryBase;
        let e = end < entryBase + size ? end : entryBase + size;
        if (recorded !== 0) {
          // A reported superpage became a table (a split): its whole extent is walked again.
          this.dropLeaf(node, i, entryBase, size, recorded);
          s = entryBase;
          e = entryBase + size;
        }
        let next = child;
        if (next === undefined) {
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
    }
  }

  private dropLeaf(node: RecordNode, i: number, iova: number, size: number, recorded: number): void {
    node.leaf[i] = 0;
    node.used--;
    this.sink?.unmap(iova, size, leafOutput(recorded));
  }

  private dropChild(node: RecordNode, i: number, child: RecordNode, level: number, base: number): void {
    node.child![i] = undefined;
    node.used--;
    const sink = this.sink;
    if (sink) forEachLeaf(child, level, base, 0, Infinity, (iova, size, output) => sink.unmap(iova, size, output));
  }
}

/** Every recorded leaf intersecting [start, end), in IOVA order. `level` is the node's level. */
export function forEachLeaf(node: RecordNode, level: number, base: number, start: number, end: number, visit: LeafVisitor): void {
  const size = LEVEL_SIZE[level]!;
  for (let i = 0; i < ENTRIES; i++) {
    const entryBase = base + i * size;
    if (entryBase >= end || entryBase + size <= start) continue;
    const value = node.leaf[i]!;
    if (value !== 0) {
      visit(entryBase, size, leafOutput(value), value % 4096);
      continue;
    }
    const child = node.child === undefined ? undefined : node.child[i];
    if (child !== undefined) forEachLeaf(child, level - 1, entryBase, start, end, visit);
  }
}
