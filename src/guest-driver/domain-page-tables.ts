/**
 * A domain's page tables: second-stage (VT-d §9.8), or in scalable mode first-stage (IA-32e
 * 4-level paging, §9.7); 3 or 4 levels of 512 entries; leaves of 4 KiB (level 1), 2 MiB (level 2,
 * PS = 1) and 1 GiB (level 3, PS = 1) where CAP.SLLPS (CAP.FS1GP) allows. The two formats differ
 * only in the bits of an entry (`PagingFormat`): both keep a present entry's low two bits non-zero
 * (R/W, or P/RW) and PS in bit 7.
 *
 * Range operations write whole runs of entries and flush each run once. Unmapping part of a
 * superpage splits it without a window: a lower-level table mirroring the superpage, minus the
 * pages being removed, is built and flushed first, then the superpage entry is replaced by a
 * pointer to it in one 64-bit store (the Xen-devel 2017 procedure). DMA anywhere else in the
 * range sees the old leaf or the new table, never a hole. Intermediate tables are kept after
 * unmap (freed with the domain).
 */
import { Pte } from "../spec/entries.ts";
import { FirstStagePte } from "../spec/scalable.ts";
import { TABLE_BYTES, type TableMemory } from "./table-memory.ts";
import { VtdDriverError } from "./errors.ts";

const R = Number(Pte.R), W = Number(Pte.W), PS = Number(Pte.PS);

/** The bits of a table (non-leaf) entry and of a leaf with permission R = 1 / W = 2. */
export interface PagingFormat {
  readonly table: number;
  leaf(permission: number, large: boolean): number;
}

export const SECOND_STAGE: PagingFormat = {
  table: R + W,
  leaf: (permission, large) => permission + (large ? PS : 0),
};

const { P, RW, US, A, D } = FirstStagePte;
/**
 * First stage: every entry user-accessible (requests without PASID are user requests) with
 * Accessed set, and a writable leaf with Dirty set, so the unit never has to update an entry
 * (the A/D updates of VT-d §3.6.2 are atomic writes the driver would otherwise race with; Linux
 * presets them too). A present leaf is readable: write-only maps as read-write.
 */
export const FIRST_STAGE: PagingFormat = {
  table: P + RW + US + A,
  leaf: (permission, large) => P + US + A + ((permission & W) !== 0 ? RW + D : 0) + (large ? PS : 0),
};
const ENTRY = 8;
const ENTRIES = 512;
/** Bytes covered by one entry at each level. */
export const LEVEL_SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48] as const;

export interface Translation {
  phys: number;
  /** Leaf level: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
  level: number;
  /** R = 1, W = 2. */
  permission: number;
}

export interface UnmapResult {
  /** A non-leaf entry changed (a superpage became a table): the invalidation may not use IH. */
  nonLeafChanged: boolean;
  splits: number;
}

function present(entry: number): boolean {
  return (entry & 3) !== 0;
}
function addressOf(entry: number): number {
  return entry - (entry % TABLE_BYTES);
}

export class DomainPageTables {
  readonly root: number;

  constructor(
    private readonly mem: TableMemory,
    /** 3 (39-bit) or 4 (48-bit). */
    readonly levels: number,
    /** Largest leaf level CAP.SLLPS (first stage: CAP.FS1GP) allows: 1, 2 or 3. */
    readonly largestLeaf: number,
    readonly format: PagingFormat = SECOND_STAGE,
  ) {
    this.root = mem.allocateTable();
  }

  private index(address: number, level: number): number {
    return Math.floor(address / LEVEL_SIZE[level]!) % ENTRIES;
  }

  private isLeaf(entry: number, level: number): boolean {
    return level === 1 || ((entry & PS) !== 0 && level <= 3);
  }

  /** The largest leaf level that fits at (iova, phys) with `remain` bytes left. */
  private leafLevel(iova: number, phys: number, remain: number, maxLevel: number): number {
    for (let level = Math.min(maxLevel, this.largestLeaf); level >= 2; level--) {
      const size = LEVEL_SIZE[level]!;
      if (iova % size === 0 && phys % size === 0 && remain >= size) return level;
    }
    return 1;
  }

  /** The table holding `level` entries for `iova`, creating (zeroed, flushed) tables above it. */
  private tableAt(iova: number, level: number): number {
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const slot = table + this.index(iova, l) * ENTRY;
      const entry = this.mem.read(slot);
      if (!present(entry)) {
        const next = this.mem.allocateTable();
        this.mem.write(slot, next + this.format.table);
        this.mem.flush(slot, ENTRY);
        table = next;
      } else if (this.isLeaf(entry, l)) {
        throw new Error(`DomainPageTables: a leaf at level ${l} over 0x${iova.toString(16)} (the caller checks overlaps first)`);
      } else {
        table = addressOf(entry);
      }
    }
    return table;
  }

  /**
   * Maps [iova, iova + length) to phys with the largest pages allowed (up to `maxLevel`).
   * The caller has checked alignment and that nothing in the range is mapped.
   */
  map(iova: number, phys: number, length: number, permission: number, maxLevel = 3): void {
    let pos = 0;
    while (pos < length) {
      const a = iova + pos, p = phys + pos, remain = length - pos;
      let level = this.leafLevel(a, p, remain, maxLevel);
      let table = this.tableAt(a, level);
      // A table already sits where a superpage would go: use smaller pages inside it.
      while (level > 1) {
        const entry = this.mem.read(table + this.index(a, level) * ENTRY);
        if (!present(entry)) break;
        table = addressOf(entry);
        level--;
      }
      const size = LEVEL_SIZE[level]!;
      const up = level + 1 <= Math.min(maxLevel, this.largestLeaf) ? LEVEL_SIZE[level + 1]! : 0;
      const bits = this.format.leaf(permission, level > 1);
      const first = this.index(a, level);
      let i = first, done = 0;
      while (i < ENTRIES && done + size <= remain) {
        if (i !== first) {
          // Stop where a larger page becomes possible, or where a lower table already exists.
          if (up !== 0 && (a + done) % up === 0 && (p + done) % up === 0 && remain - done >= up) break;
          if (level > 1 && present(this.mem.read(table + i * ENTRY))) break;
        }
        this.mem.write(table + i * ENTRY, p + done + bits);
        i++;
        done += size;
      }
      this.mem.flush(table + first * ENTRY, (i - first) * ENTRY);
      pos += done;
    }
  }

  /** First mapped address in [start, end), or -1. */
  firstMapped(start: number, end: number): number {
    return this.find(this.root, this.levels, 0, start, end, true);
  }

  /** First unmapped address in [start, end), or -1. */
  firstUnmapped(start: number, end: number): number {
    return this.find(this.root, this.levels, 0, start, end, false);
  }

  private find(table: number, level: number, base: number, start: number, end: number, wantMapped: boolean): number {
    const size = LEVEL_SIZE[level]!;
    const last = Math.floor((end - 1 - base) / size);
    for (let i = Math.floor((start - base) / size); i <= last; i++) {
      const entryBase = base + i * size;
      const entry = this.mem.read(table + i * ENTRY);
      const s = Math.max(start, entryBase);
      if (!present(entry)) {
        if (!wantMapped) return s;
        continue;
      }
      if (this.isLeaf(entry, level)) {
        if (wantMapped) return s;
        continue;
      }
      const found = this.find(addressOf(entry), level - 1, entryBase, s, Math.min(end, entryBase + size), wantMapped);
      if (found >= 0) return found;
    }
    return -1;
  }

  /**
   * Unmaps [start, end), every page of which is mapped (the caller checked). `onSplitGap` is for
   * the test-only naive split: called between clearing a superpage and installing its table.
   */
  unmap(start: number, end: number, atomicSplit = true, onSplitGap?: (base: number, size: number) => void): UnmapResult {
    const result: UnmapResult = { nonLeafChanged: false, splits: 0 };
    this.clear(this.root, this.levels, 0, start, end, result, atomicSplit, onSplitGap);
    return result;
  }

  private clear(table: number, level: number, base: number, start: number, end: number, result: UnmapResult,
    atomicSplit: boolean, onSplitGap?: (base: number, size: number) => void): void {
    const size = LEVEL_SIZE[level]!;
    const first = Math.floor((start - base) / size);
    const last = Math.floor((end - 1 - base) / size);
    let runFirst = -1, runLast = -1;
    for (let i = first; i <= last; i++) {
      const entryBase = base + i * size;
      const s = Math.max(start, entryBase), e = Math.min(end, entryBase + size);
      const slot = table + i * ENTRY;
      const entry = this.mem.read(slot);
      if (!present(entry)) continue;
      if (!this.isLeaf(entry, level)) {
        this.clear(addressOf(entry), level - 1, entryBase, s, e, result, atomicSplit, onSplitGap);
      } else if (s === entryBase && e === entryBase + size) {
        this.mem.write(slot, 0);
        if (runFirst < 0) runFirst = i;
        runLast = i;
      } else {
        this.split(slot, entry, level, entryBase, s, e, atomicSplit, onSplitGap);
        result.nonLeafChanged = true;
        result.splits++;
      }
    }
    if (runFirst >= 0) this.mem.flush(table + runFirst * ENTRY, (runLast - runFirst + 1) * ENTRY);
  }

  /**
   * Rewrites the read / write bits of every leaf in [start, end) (all mapped, the caller checked)
   * to `permission`, one store per leaf. A superpage only partly inside is refused.
   */
  protect(start: number, end: number, permission: number, table = this.root, level = this.levels, base = 0): void {
    const size = LEVEL_SIZE[level]!;
    const first = Math.floor((start - base) / size);
    const last = Math.floor((end - 1 - base) / size);
    for (let i = first; i <= last; i++) {
      const entryBase = base + i * size;
      const s = Math.max(start, entryBase), e = Math.min(end, entryBase + size);
      const slot = table + i * ENTRY;
      const entry = this.mem.read(slot);
      if (!present(entry)) continue;
      if (!this.isLeaf(entry, level)) {
        this.protect(s, e, permission, addressOf(entry), level - 1, entryBase);
      } else if (s === entryBase && e === entryBase + size) {
        this.mem.write(slot, addressOf(entry) + this.format.leaf(permission, level > 1));
        this.mem.flush(slot, ENTRY);
      } else {
        throw new VtdDriverError("unsupported", `protect: the ${size >= 2 ** 30 ? "1 GiB" : "2 MiB"} page at 0x${entryBase.toString(16)} is only partly in the range`);
      }
    }
  }

  private split(slot: number, entry: number, level: number, base: number, removeStart: number, removeEnd: number,
    atomic: boolean, onSplitGap?: (base: number, size: number) => void): void {
    if (!atomic) {
      // Test-only: the naive order, with a window in which the whole superpage is unmapped.
      this.mem.write(slot, 0);
      this.mem.flush(slot, ENTRY);
      onSplitGap?.(base, LEVEL_SIZE[level]!);
    }
    const table = this.mirror(entry, level, base, removeStart, removeEnd);
    this.mem.write(slot, table + this.format.table);
    this.mem.flush(slot, ENTRY);
  }

  /** A level-(level-1) table mapping what the leaf `entry` maps, except [removeStart, removeEnd). Flushed. */
  private mirror(entry: number, level: number, base: number, removeStart: number, removeEnd: number): number {
    const table = this.mem.allocateTable();
    const sub = level - 1;
    const subSize = LEVEL_SIZE[sub]!;
    const output = addressOf(entry) - (addressOf(entry) % LEVEL_SIZE[level]!);
    const bits = this.format.leaf(entry & 3, sub > 1);
    for (let i = 0; i < ENTRIES; i++) {
      const s = base + i * subSize, e = s + subSize;
      if (e <= removeStart || s >= removeEnd) {
        this.mem.write(table + i * ENTRY, output + i * subSize + bits);
      } else if (s < removeStart || e > removeEnd) {
        const child = this.mirror(output + i * subSize + bits, sub, s, removeStart, removeEnd);
        this.mem.write(table + i * ENTRY, child + this.format.table);
      }
    }
    this.mem.flush(table, TABLE_BYTES);
    return table;
  }

  /** The translation of `iova`, as the tables hold it now. */
  lookup(iova: number): Translation | undefined {
    let table = this.root;
    let permission = R + W;
    for (let level = this.levels; level >= 1; level--) {
      const entry = this.mem.read(table + this.index(iova, level) * ENTRY);
      if (!present(entry)) return undefined;
      permission &= entry & 3;
      if (this.isLeaf(entry, level)) {
        const size = LEVEL_SIZE[level]!;
        return { phys: addressOf(entry) - (addressOf(entry) % size) + (iova % size), level, permission };
      }
      table = addressOf(entry);
    }
    return undefined;
  }

  /** Every table page (for teardown), root first. */
  pages(): number[] {
    const out: number[] = [];
    const walk = (table: number, level: number) => {
      out.push(table);
      if (level === 1) return;
      for (let i = 0; i < ENTRIES; i++) {
        const entry = this.mem.read(table + i * ENTRY);
        if (present(entry) && !this.isLeaf(entry, level)) walk(addressOf(entry), level - 1);
      }
    };
    walk(this.root, this.levels);
    return out;
  }
}
