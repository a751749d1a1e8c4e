/**
 * The IOTLB (VT-d §6.2.3): leaf translations tagged by domain id, 4-way set associative, bounded,
 * evicting one entry at a time (round robin within a set). A negative entry (CM = 1 only,
 * VT-d §6.1) caches a faulting result: `reason` != 0. Everything lives in typed arrays: lookups
 * and fills allocate nothing.
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { numbersOf, type Section } from "../state/codec.ts";

/** An IOTLB as a snapshot holds it: every slot (STRIDE numbers each) and each set's next victim. */
export interface IotlbState {
  entries: number[];
  nextVictim: number[];
}

/** A checked snapshot of an IOTLB, ready to load. */
export interface IotlbLoad {
  entries: Float64Array;
  nextVictim: Uint8Array;
}

const WAYS = 4;
/** Input page size of a leaf at each level. */
const SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30];

/**
 * Each entry is four consecutive numbers of one Float64Array, so a lookup touches one cache line
 * per way instead of one per field:
 * - KEY: domain id and leaf level in one number, `did * 4 + level` (level 1 = 4 KiB, 2 = 2 MiB,
 *   3 = 1 GiB); 0 = empty. One compare checks validity, domain and level at once.
 * - PAGE: input page number at that level's page size.
 * - OUTPUT: output address of the page.
 * - ACCESS: `reason * 4 + permission`: permission bits 1 read, 2 write; reason 0 for a
 *   translation, a fault reason for a negative entry.
 */
const STRIDE = 4;
const KEY = 0, PAGE = 1, OUTPUT = 2, ACCESS = 3;

export class Iotlb {
  readonly capacity: number;
  private readonly setMask: number;
  private readonly entries: Float64Array;
  private readonly nextVictim: Uint8Array;
  /** Live entries per leaf level, so lookups skip levels with nothing cached. */
  private readonly liveAtLevel = new Int32Array(4);
  /** Live entries per domain id, so a domain or page-selective invalidation of an empty domain costs nothing. */
  private readonly liveInDomain = new Int32Array(65536);
  count = 0;
  /** Entry slots invalidations visited (a measure of their host cost, for the queue's work budget). */
  work = 0;

  // Result of the last successful lookup (four stores per hit; the rest is derived).
  /** Output address of the hit page. */
  hitOutput = 0;
  /** Input address of the start of the hit page. */
  hitInputBase = 0;
  /** `hitReason * 4 + hitPermission`: below 4 exactly when the hit is a translation, not a negative entry. */
  hitAccess = 0;
  /** Input page size of the hit leaf (4 KiB, 2 MiB or 1 GiB). */
  hitSize = 0;

  /** Permission bits of the hit: 1 read, 2 write. */
  get hitPermission(): number {
    return this.hitAccess & 3;
  }
  /** 0 for a translation; the fault reason of a negative entry. */
  get hitReason(): number {
    return this.hitAccess >>> 2;
  }
  /** Leaf level of the hit: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
  get hitLevel(): number {
    return this.hitSize === 4096 ? 1 : this.hitSize === 0x20_0000 ? 2 : 3;
  }

  constructor(capacity: number) {
    this.capacity = capacity;
    const sets = capacity / WAYS;
    this.setMask = sets - 1;
    this.entries = new Float64Array(capacity * STRIDE);
    this.nextVictim = new Uint8Array(sets);
  }

  /** Index (in entries, not numbers) of the first way of the set for this tag. */
  private setIndex(did: number, level: number, page: number): number {
    const lo = page >>> 0;
    const hi = (page * (1 / TWO_POW_32)) >>> 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d) ^ (did << 8) ^ level, 0x9e3779b1);
    h ^= h >>> 15;
    return (h & this.setMask) * 4; // WAYS
  }

  /**
   * Offset in `entries` of the entry holding the tag, or -1. Hot: the layout numbers are written
   * as literals (a module constant is a context load in V8): 4 ways of STRIDE 4, KEY +0, PAGE +1.
   */
  private find(did: number, level: number, page: number): number {
    const first = this.setIndex(did, level, page) * 4;
    const key = did * 4 + level;
    const e = this.entries;
    for (let at = first; at < first + 16; at += 4) {
      if (e[at] === key && e[at + 1] === page) return at;
    }
    return -1;
  }

  /** Looks `address` up for domain `did`; on a hit fills the hit* fields and returns true. */
  lookup(did: number, address: number): boolean {
    return this.lookup4K(did, address) || this.lookupSuperpage(did, address);
  }

  /**
   * The first step of `lookup`: a 4 KiB leaf only. Small enough for V8 to inline into the unit's
   * fast path (a call would box an address above 2^31 on every request).
   */
  lookup4K(did: number, address: number): boolean {
    if (this.liveAtLevel[1] === 0) return false;
    const page = Math.floor(address * (1 / 4096));
    const at = this.find(did, 1, page);
    if (at < 0) return false;
    // As `hit`, written out: one function less on the fast path.
    const e = this.entries;
    this.hitAccess = e[at + 3]!;
    this.hitOutput = e[at + 2]!;
    this.hitInputBase = page * 4096;
    this.hitSize = 4096;
    return true;
  }

  /** The rest of `lookup`: 2 MiB, then 1 GiB leaves. */
  lookupSuperpage(did: number, address: number): boolean {
    const live = this.liveAtLevel;
    if (live[2] === 0 && live[3] === 0) return false;
    let page = Math.floor(address * (1 / 0x20_0000));
    if (live[2] !== 0 && this.hit(this.find(did, 2, page), page, 0x20_0000)) return true;
    page = Math.floor(page * (1 / 512));
    return live[3] !== 0 && this.hit(this.find(did, 3, page), page, 0x4000_0000);
  }

  private hit(at: number, page: number, size: number): boolean {
    if (at < 0) return false;
    const e = this.entries;
    this.hitAccess = e[at + 3]!; // ACCESS
    this.hitOutput = e[at + 2]!; // OUTPUT
    this.hitInputBase = page * size;
    this.hitSize = size;
    return true;
  }

  insert(did: number, level: number, address: number, output: number, permission: number, reason: number): void {
    const page = Math.floor(address / SIZE[level]!);
    const e = this.entries;
    let at = this.find(did, level, page);
    if (at < 0) {
      const base = this.setIndex(did, level, page);
      for (let w = base * STRIDE; w < (base + WAYS) * STRIDE; w += STRIDE) if (e[w + KEY] === 0) { at = w; break; }
      if (at < 0) {
        const set = base / WAYS;
        at = (base + this.nextVictim[set]!) * STRIDE;
        this.nextVictim[set] = (this.nextVictim[set]! + 1) % WAYS;
        this.drop(at);
      }
      e[at + KEY] = did * 4 + level;
      this.count++;
      this.liveAtLevel[level]!++;
      this.liveInDomain[did]!++;
    }
    e[at + PAGE] = page;
    e[at + OUTPUT] = output;
    e[at + ACCESS] = reason * 4 + (permission & 3);
  }

  private drop(at: number): void {
    const key = this.entries[at + KEY]!;
    if (key === 0) return;
    this.entries[at + KEY] = 0;
    this.count--;
    this.liveAtLevel[key & 3]!--;
    this.liveInDomain[key >>> 2]!--;
  }

  /**
   * Calls `visit` for every cached entry: domain, leaf level (1 4 KiB, 2 2 MiB, 3 1 GiB), input
   * page number at that level, output address, permission bits and fault reason (0 unless negative).
   */
  forEachEntry(visit: (did: number, level: number, page: number, output: number, permission: number, reason: number) => void): void {
    const e = this.entries;
    for (let at = 0; at < e.length; at += STRIDE) {
      const key = e[at + KEY]!;
      if (key === 0) continue;
      const access = e[at + ACCESS]!;
      visit(Math.floor(key / 4), key % 4, e[at + PAGE]!, e[at + OUTPUT]!, access & 3, Math.floor(access / 4));
    }
  }

  invalidateAll(): number {
    const dropped = this.count;
    if (dropped !== 0) for (let at = KEY; at < this.entries.length; at += STRIDE) this.entries[at] = 0;
    this.liveAtLevel.fill(0);
    if (dropped !== 0) this.liveInDomain.fill(0);
    this.count = 0;
    return dropped;
  }

  invalidateDomain(did: number): number {
    if (this.liveInDomain[did & 0xffff] === 0) return 0;
    const e = this.entries;
    let dropped = 0;
    this.work += this.capacity;
    for (let at = 0; at < e.length; at += STRIDE) {
      const key = e[at + KEY]!;
      if (key !== 0 && key >>> 2 === did) { this.drop(at); dropped++; }
    }
    return dropped;
  }

  /**
   * Page-selective invalidation of 2^am 4 KiB pages at `address` (aligned by the caller) in `did`:
   * every entry whose page overlaps the range goes, superpages included (VT-d §6.5.1.2).
   */
  invalidatePages(did: number, address: number, am: number): number {
    if (this.liveInDomain[did & 0xffff] === 0) return 0;
    if (am > 6) return this.invalidateRange(did, address, address + 2 ** am * 4096); // more than 64 pages
    const pages = 1 << am;
    const end = address + pages * 4096;
    let dropped = 0;
    this.work += pages * 3;
    for (let level = 1; level <= 3; level++) {
      if (this.liveAtLevel[level] === 0) continue;
      const size = SIZE[level]!;
      for (let page = Math.floor(address / size); page * size < end; page++) {
        const at = this.find(did, level, page);
        if (at >= 0) { this.drop(at); dropped++; }
      }
    }
    return dropped;
  }

  /** At most one pass over the entries (`capacity` slots), stopping when the domain has none left. */
  private invalidateRange(did: number, start: number, end: number): number {
    const e = this.entries;
    let dropped = 0;
    this.work += this.capacity;
    for (let at = 0; at < e.length && this.liveInDomain[did]! > 0; at += STRIDE) {
      const key = e[at + KEY]!;
      if (key === 0 || key >>> 2 !== did) continue;
      const size = 2 ** (12 + 9 * ((key & 3) - 1));
      const first = e[at + PAGE]! * size;
      if (first < end && first + size > start) { this.drop(at); dropped++; }
    }
    return dropped;
  }

  // ---- snapshot (state/) ----

  save(): IotlbState {
    return { entries: numbersOf(this.entries), nextVictim: numbersOf(this.nextVictim) };
  }

  /**
   * Checks a saved IOTLB against this one's shape: each live entry a valid key in the set its tag
   * hashes to, no tag twice. Touches nothing.
   */
  decode(s: Section): IotlbLoad {
    const entries = s.numbers("entries", this.capacity * STRIDE, 0, 2 ** 64);
    const nextVictim = s.ints("nextVictim", this.nextVictim.length, 0, WAYS - 1, Uint8Array);
    for (let at = 0; at < entries.length; at += STRIDE) {
      const key = entries[at + KEY]!;
      if (key === 0) continue;
      const where = `entries[${at}..${at + STRIDE - 1}]`;
      const level = key % 4, did = Math.floor(key / 4), page = entries[at + PAGE]!, access = entries[at + ACCESS]!;
      if (!Number.isInteger(key) || level === 0 || did > 0xffff) s.fail(`${where}: key ${key} is no domain and leaf level`);
      if (!Number.isInteger(page) || page >= 2 ** 52) s.fail(`${where}: page ${page} is not a page number`);
      if (!Number.isInteger(access) || access > 0xff * 4 + 3) s.fail(`${where}: access ${access} is no reason and permission`);
      const set = this.setIndex(did, level, page) * STRIDE;
      if (at < set || at >= set + WAYS * STRIDE) s.fail(`${where}: domain ${did} page ${page} does not belong in this set`);
      for (let other = set; other < at; other += STRIDE) {
        if (entries[other + KEY] === key && entries[other + PAGE] === page) s.fail(`${where}: domain ${did} page ${page} is cached twice`);
      }
    }
    return { entries, nextVictim };
  }

  load(state: IotlbLoad): void {
    this.entries.set(state.entries);
    this.nextVictim.set(state.nextVictim);
    this.liveAtLevel.fill(0);
    this.liveInDomain.fill(0);
    let count = 0;
    for (let at = 0; at < this.entries.length; at += STRIDE) {
      const key = this.entries[at + KEY]!;
      if (key === 0) continue;
      count++;
      this.liveAtLevel[key & 3]!++;
      this.liveInDomain[key >>> 2]!++;
    }
    this.count = count;
  }
}
