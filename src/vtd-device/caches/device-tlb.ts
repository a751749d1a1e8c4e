/**
 * Device-TLBs (ATS address translation caches) of the endpoints behind the unit, one per
 * requester id (VT-d §4, §6.5.2.5). An endpoint whose context entry has TT = 1 keeps the
 * translations it was given here and uses them without asking the unit again, until a
 * device-TLB invalidation reaches it: that is what makes such invalidations slow and their
 * completion worth waiting for.
 *
 * Bounded like hardware: all endpoints' 4 KiB entries share one table of `capacity` slots
 * (4-way set associative, hashed by requester id and page, round robin within a set), and one
 * endpoint holds at most `perEndpoint` of them (its oldest fill goes first). PCIe ATS lets an
 * endpoint drop a cached translation whenever it likes, so an eviction is never visible to the
 * guest beyond one more translation request. Everything is in typed arrays, allocated on the
 * first fill: lookups, fills and invalidations allocate nothing, and an invalidation costs at
 * most min(4 × pages named, perEndpoint) slot visits.
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { numbersOf, type Section } from "../state/codec.ts";

/** Device-TLBs as a snapshot holds them: null before the first fill, else every slot and each endpoint's fill order (next/prev). */
export type DeviceTlbsState = null | {
  owner: number[]; page: number[]; output: number[]; permission: number[]; next: number[]; prev: number[]; victim: number[];
};

/** A checked snapshot of the device-TLBs, ready to load (null: nothing was ever filled). */
export type DeviceTlbsLoad = null | {
  owner: Int32Array; page: Float64Array; output: Float64Array; permission: Int32Array; next: Int32Array; prev: Int32Array; victim: Int32Array;
  oldest: Int32Array; newest: Int32Array; held: Int32Array; size: number;
};

/** Default `deviceIotlbEntries`: slots shared by every endpoint's device-TLB. */
export const DEFAULT_DEVICE_TLB_ENTRIES = 4096;
/** Default `deviceIotlbEntriesPerEndpoint`. */
export const DEFAULT_DEVICE_TLB_ENTRIES_PER_ENDPOINT = 256;

const WAYS = 4;
const ENDPOINTS = 0x1_0000;
const NONE = -1;
const EMPTY_I32 = new Int32Array(0);
const EMPTY_F64 = new Float64Array(0);

/** What `lookup` returns: one object per `DeviceTlbs`, overwritten by the next lookup. */
export interface DeviceTlbHit {
  /** Output address of the 4 KiB page. */
  pageOutput: number;
  /** Permission bits: 1 read, 2 write. */
  permission: number;
}

export class DeviceTlbs {
  readonly capacity: number;
  readonly perEndpoint: number;
  /** Live entries, all endpoints together. */
  size = 0;
  /** Slots visited by invalidations since creation (the work a guest can cause; tests bound it). */
  invalidationWork = 0;

  private readonly setMask: number;
  private readonly hit: DeviceTlbHit = { pageOutput: 0, permission: 0 };
  // Per slot (allocated on the first fill): requester id + 1 (0 = empty), input page number,
  // output address, permission, and the links of the endpoint's list in fill order.
  private owner = EMPTY_I32;
  private page = EMPTY_F64;
  private output = EMPTY_F64;
  private permission = EMPTY_I32;
  private next = EMPTY_I32;
  private prev = EMPTY_I32;
  private victim = EMPTY_I32;
  // Per endpoint: its oldest and newest slot, and how many it holds.
  private oldest = EMPTY_I32;
  private newest = EMPTY_I32;
  private held = EMPTY_I32;

  constructor(capacity = DEFAULT_DEVICE_TLB_ENTRIES, perEndpoint = Math.min(DEFAULT_DEVICE_TLB_ENTRIES_PER_ENDPOINT, capacity)) {
    if (!(capacity >= WAYS && (capacity & (capacity - 1)) === 0)) throw new RangeError(`DeviceTlbs: capacity ${capacity} is not a power of two ≥ ${WAYS}`);
    if (!(Number.isInteger(perEndpoint) && perEndpoint >= 1 && perEndpoint <= capacity)) throw new RangeError(`DeviceTlbs: perEndpoint ${perEndpoint} not in 1..${capacity}`);
    this.capacity = capacity;
    this.perEndpoint = perEndpoint;
    this.setMask = capacity / WAYS - 1;
  }

  private allocate(): void {
    const n = this.capacity;
    this.owner = new Int32Array(n);
    this.page = new Float64Array(n);
    this.output = new Float64Array(n);
    this.permission = new Int32Array(n);
    this.next = new Int32Array(n);
    this.prev = new Int32Array(n);
    this.victim = new Int32Array(n / WAYS);
    this.oldest = new Int32Array(ENDPOINTS).fill(NONE);
    this.newest = new Int32Array(ENDPOINTS).fill(NONE);
    this.held = new Int32Array(ENDPOINTS);
  }

  /** First slot of the set for (sid, page). */
  private setOf(sid: number, page: number): number {
    const lo = page >>> 0;
    const hi = (page * (1 / TWO_POW_32)) >>> 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d) ^ Math.imul(sid, 0x85ebca6b), 0x9e3779b1);
    h ^= h >>> 15;
    return (h & this.setMask) * WAYS;
  }

  private find(sid: number, page: number): number {
    const first = this.setOf(sid, page);
    const key = sid + 1;
    for (let at = first; at < first + WAYS; at++) {
      if (this.owner[at] === key && this.page[at] === page) return at;
    }
    return NONE;
  }

  /** The endpoint's cached translation of the page holding `address`, or undefined. The result is reused by the next call. */
  lookup(sid: number, address: number): DeviceTlbHit | undefined {
    if (this.size === 0 || !validSid(sid)) return undefined;
    const at = this.find(sid, Math.floor(address / 4096));
    if (at === NONE) return undefined;
    this.hit.pageOutput = this.output[at]!;
    this.hit.permission = this.permission[at]!;
    return this.hit;
  }

  /** The endpoint caches the translation of the 4 KiB page at `address`. */
  fill(sid: number, address: number, pageOutput: number, permission: number): void {
    if (!validSid(sid) || !(address >= 0)) return;
    if (this.owner.length === 0) this.allocate();
    const page = Math.floor(address / 4096);
    let at = this.find(sid, page);
    if (at === NONE) {
      if (this.held[sid]! >= this.perEndpoint) this.drop(this.oldest[sid]!);
      const first = this.setOf(sid, page);
      for (let w = first; w < first + WAYS; w++) if (this.owner[w] === 0) { at = w; break; }
      if (at === NONE) {
        const set = first / WAYS;
        at = first + this.victim[set]!;
        this.victim[set] = (this.victim[set]! + 1) % WAYS;
        this.drop(at);
      }
      this.owner[at] = sid + 1;
      this.page[at] = page;
      this.link(sid, at);
    }
    this.output[at] = pageOutput;
    this.permission[at] = permission & 3;
  }

  /** Appends slot `at` to the endpoint's list (newest end). */
  private link(sid: number, at: number): void {
    const last = this.newest[sid]!;
    this.prev[at] = last;
    this.next[at] = NONE;
    if (last === NONE) this.oldest[sid] = at;
    else this.next[last] = at;
    this.newest[sid] = at;
    this.held[sid]!++;
    this.size++;
  }

  private drop(at: number): void {
    const key = this.owner[at]!;
    if (key === 0) return;
    const sid = key - 1;
    const before = this.prev[at]!, after = this.next[at]!;
    if (before === NONE) this.oldest[sid] = after;
    else this.next[before] = after;
    if (after === NONE) this.newest[sid] = before;
    else this.prev[after] = before;
    this.owner[at] = 0;
    this.held[sid]!--;
    this.size--;
  }

  /** Drops the endpoint's entries in [start, end); returns how many. */
  invalidate(sid: number, start: number, end: number): number {
    if (this.size === 0 || !validSid(sid)) return 0;
    const held = this.held[sid]!;
    if (held === 0 || !(end > start)) return 0;
    let dropped = 0;
    const firstPage = Math.max(0, Math.floor(start / 4096));
    const pages = Math.ceil(end / 4096) - firstPage;
    if (pages * WAYS < held) {
      // A few pages: look each one up.
      for (let page = firstPage; page < firstPage + pages; page++) {
        this.invalidationWork += WAYS;
        const at = this.find(sid, page);
        if (at !== NONE) { this.drop(at); dropped++; }
      }
      return dropped;
    }
    // Otherwise walk the endpoint's own entries (at most perEndpoint).
    for (let at = this.oldest[sid]!; at !== NONE; ) {
      const following = this.next[at]!;
      this.invalidationWork++;
      const base = this.page[at]! * 4096;
      if (base < end && base + 4096 > start) { this.drop(at); dropped++; }
      at = following;
    }
    return dropped;
  }

  /** Entries the endpoint holds. */
  entries(sid: number): number {
    return this.owner.length === 0 || !validSid(sid) ? 0 : this.held[sid]!;
  }

  clear(): void {
    if (this.owner.length === 0) return;
    this.owner.fill(0);
    this.victim.fill(0);
    this.oldest.fill(NONE);
    this.newest.fill(NONE);
    this.held.fill(0);
    this.size = 0;
  }

  // ---- snapshot (state/) ----

  save(): DeviceTlbsState {
    if (this.owner.length === 0) return null;
    return {
      owner: numbersOf(this.owner), page: numbersOf(this.page), output: numbersOf(this.output), permission: numbersOf(this.permission),
      next: numbersOf(this.next), prev: numbersOf(this.prev), victim: numbersOf(this.victim),
    };
  }

  /**
   * Checks saved device-TLBs against this shape: each live slot in the set its tag hashes to and
   * no tag twice, each endpoint's fill order one well-linked list of its own slots, at most
   * `perEndpoint` long. Builds the per-endpoint heads and counts; touches nothing.
   */
  decode(s: Section, value: unknown): DeviceTlbsLoad {
    if (value === null) return null;
    const n = this.capacity;
    const owner = s.ints("owner", n, 0, ENDPOINTS, Int32Array);
    const page = s.numbers("page", n, 0, 2 ** 52);
    const output = s.numbers("output", n, 0, 2 ** 64);
    const permission = s.ints("permission", n, 0, 3, Int32Array);
    const next = s.ints("next", n, NONE, n - 1, Int32Array);
    const prev = s.ints("prev", n, NONE, n - 1, Int32Array);
    const victim = s.ints("victim", n / WAYS, 0, WAYS - 1, Int32Array);
    const oldest = new Int32Array(ENDPOINTS).fill(NONE);
    const newest = new Int32Array(ENDPOINTS).fill(NONE);
    const held = new Int32Array(ENDPOINTS);
    let size = 0;
    for (let at = 0; at < n; at++) {
      const key = owner[at]!;
      if (key === 0) continue;
      const sid = key - 1, p = page[at]!;
      if (!Number.isInteger(p)) s.fail(`page[${at}]: ${p} is not a page number`);
      const first = this.setOf(sid, p);
      if (at < first || at >= first + WAYS) s.fail(`slot ${at}: requester ${sid} page ${p} does not belong in this set`);
      for (let other = first; other < at; other++) if (owner[other] === key && page[other] === p) s.fail(`slot ${at}: requester ${sid} page ${p} is cached twice`);
      const before = prev[at]!, after = next[at]!;
      if (before === NONE) {
        if (oldest[sid] !== NONE) s.fail(`slot ${at}: requester ${sid} has two oldest entries`);
        oldest[sid] = at;
      } else if (owner[before] !== key || next[before] !== at) s.fail(`prev[${at}]: not linked back from slot ${before}`);
      if (after === NONE) newest[sid] = at;
      else if (owner[after] !== key || prev[after] !== at) s.fail(`next[${at}]: not linked back from slot ${after}`);
      held[sid]!++;
      size++;
    }
    // Every live slot is reached from its endpoint's oldest entry (no cycle apart from the lists).
    let reached = 0;
    for (let sid = 0; sid < ENDPOINTS; sid++) {
      if (held[sid]! > this.perEndpoint) s.fail(`requester ${sid} holds ${held[sid]} entries, more than ${this.perEndpoint}`);
      for (let at = oldest[sid]!, steps = 0; at !== NONE && steps <= n; at = next[at]!, steps++) reached++;
    }
    if (reached !== size) s.fail(`the endpoints' fill-order lists reach ${reached} of ${size} live entries`);
    return { owner, page, output, permission, next, prev, victim, oldest, newest, held, size };
  }

  load(state: DeviceTlbsLoad): void {
    if (state === null) return this.clear();
    if (this.owner.length === 0) this.allocate();
    this.owner.set(state.owner);
    this.page.set(state.page);
    this.output.set(state.output);
    this.permission.set(state.permission);
    this.next.set(state.next);
    this.prev.set(state.prev);
    this.victim.set(state.victim);
    this.oldest.set(state.oldest);
    this.newest.set(state.newest);
    this.held.set(state.held);
    this.size = state.size;
  }
}

function validSid(sid: number): boolean {
  return (sid & 0xffff) === sid;
}

/**
 * The range a device-TLB invalidation names (PCIe ATS §3.1.2), from the descriptor's address
 * bits 63:12 given as two dwords (`low` = bits 31:0, `high` = bits 63:32; bits 11:0 ignored).
 * With S = 0 one 4 KiB page; with S = 1 the lowest clear address bit from bit 12 up gives the
 * size, 2^(13 + number of set bits below it); all of bits 63:12 set names the whole 2^64 space.
 * Exact in integer arithmetic on the dwords (an address above 2^53 is not a safe number); the
 * result is in `rangeStart` / `rangeEnd` (no allocation), `rangeEnd` up to 2^64.
 */
export class DeviceTlbRange {
  rangeStart = 0;
  rangeEnd = 0;

  decode(low: number, high: number, sizeBit: boolean): void {
    low = (low & 0xffff_f000) >>> 0;
    high = high >>> 0;
    let bits = 12; // log2 of the size
    if (sizeBit) {
      const lowOnes = trailingOnes(low >>> 12); // up to 20
      bits = 13 + (lowOnes < 20 ? lowOnes : 20 + trailingOnes(high));
      if (bits >= 64) {
        this.rangeStart = 0;
        this.rangeEnd = 2 ** 64;
        return;
      }
    }
    const start = bits < 32
      ? high * TWO_POW_32 + ((low & ~(2 ** bits - 1)) >>> 0)
      : (high - (high % 2 ** (bits - 32))) * TWO_POW_32;
    this.rangeStart = start;
    this.rangeEnd = start + 2 ** bits;
  }
}

/** Number of consecutive set bits of a 32-bit value from bit 0 (0..32). */
function trailingOnes(x: number): number {
  x >>>= 0;
  if (x === 0xffff_ffff) return 32;
  const lowestClear = ~x & (x + 1); // a power of two below 2^32
  return 31 - Math.clz32(lowestClear);
}
