/**
 * The record of what MAP notifiers were told about one address space: a tree shaped like the
 * guest's second-stage tables over the IOVA space (one node per table the sync walks reached,
 * 512 slots each, every slot a reported leaf or a child node), so a sync compares the tables
 * with it slot by slot (page-walk-sync.ts).
 *
 * Its size is bounded: a node per guest table reached (about 4 KiB for a last-level table, 8 KiB
 * above), at most `notifierTableLimit` nodes per address space (`SpaceRecord.tables` counts them).
 */
import { ENTRIES_PER_TABLE as ENTRIES, LEVEL_SIZE } from "../../spec/entries.ts";

/** What was last reported for one guest table. */
export class RecordNode {
  /** Per slot: 0 = nothing, else a reported leaf as output + permission (outputs are 4 KiB aligned). */
  readonly leaf = new Float64Array(ENTRIES);
  /** Per slot (levels ≥ 2): the record of the table the slot pointed to. */
  child: (RecordNode | undefined)[] | undefined;
  /** Slots holding a leaf or a child (possibly empty). */
  used = 0;
}

/** The record of one address space: its root node (the context's table) and how many nodes it holds. */
export class SpaceRecord {
  readonly root = new RecordNode();
  /** Nodes in the tree, the root included: at most the unit's `notifierTableLimit`. */
  tables = 1;

  /** Forgets everything (the root node is kept and emptied: nothing is allocated). */
  reset(): void {
    const root = this.root;
    root.leaf.fill(0);
    root.child = undefined;
    root.used = 0;
    this.tables = 1;
  }
}

export type LeafVisitor = (iova: number, size: number, output: number, permission: number) => void;

/** The output address of a recorded leaf value. */
export function leafOutput(value: number): number {
  return value - (value % 4096);
}

/** True when the record holds at least one leaf. */
export function hasLeaf(node: RecordNode): boolean {
  if (node.used === 0) return false;
  for (let i = 0; i < ENTRIES; i++) if (node.leaf[i] !== 0) return true;
  const children = node.child;
  if (children !== undefined) {
    for (let i = 0; i < ENTRIES; i++) {
      const child = children[i];
      if (child !== undefined && hasLeaf(child)) return true;
    }
  }
  return false;
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
