/**
 * The interrupt entry cache (IEC, VT-d §6.2, §6.5.2.7): IRTEs by interrupt index, as read from
 * the table (four dwords), direct mapped and bounded (a new entry evicts the one in its slot).
 * What may be kept is the caching policy's call: under caching mode a not-present or erroneous
 * IRTE too. Lookups and fills allocate nothing; an invalidation costs at most min(count, capacity).
 */
import { numbersOf, type Section } from "../state/codec.ts";

export const DEFAULT_INTERRUPT_ENTRY_CACHE_ENTRIES = 256;

/** An interrupt entry cache as a snapshot holds it (one number per slot in each array). */
export interface InterruptEntryCacheState {
  tag: number[]; w0: number[]; w1: number[]; w2: number[]; w3: number[];
}

/** A checked snapshot of an interrupt entry cache, ready to load. */
export interface InterruptEntryCacheLoad {
  tag: Int32Array; w0: Int32Array; w1: Int32Array; w2: Int32Array; w3: Int32Array;
}

export class InterruptEntryCache {
  readonly capacity: number;
  private readonly mask: number;
  /** Interrupt index + 1 of the entry in each slot; 0 = empty. */
  private readonly tag: Int32Array;
  /** The IRTE's dwords: w0 = bits 31:0 ... w3 = bits 127:96 (as int32; read them with bit operations). */
  readonly w0: Int32Array;
  readonly w1: Int32Array;
  readonly w2: Int32Array;
  readonly w3: Int32Array;
  count = 0;

  /** `capacity`: a power of two. */
  constructor(capacity = DEFAULT_INTERRUPT_ENTRY_CACHE_ENTRIES) {
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.tag = new Int32Array(capacity);
    this.w0 = new Int32Array(capacity);
    this.w1 = new Int32Array(capacity);
    this.w2 = new Int32Array(capacity);
    this.w3 = new Int32Array(capacity);
  }

  /** Slot holding interrupt index `index`, or -1. */
  lookup(index: number): number {
    const slot = index & this.mask;
    return this.tag[slot] === index + 1 ? slot : -1;
  }

  /** Keeps the IRTE of `index` (evicting the slot's occupant). */
  fill(index: number, w0: number, w1: number, w2: number, w3: number): void {
    const slot = index & this.mask;
    if (this.tag[slot] === 0) this.count++;
    this.tag[slot] = index + 1;
    this.w0[slot] = w0;
    this.w1[slot] = w1;
    this.w2[slot] = w2;
    this.w3[slot] = w3;
  }

  /** Global invalidation: every entry goes. Returns how many were dropped. */
  invalidateAll(): number {
    const dropped = this.count;
    if (dropped === 0) return 0;
    this.tag.fill(0);
    this.count = 0;
    return dropped;
  }

  /** Index-selective: the entries of indexes [first, first + count). Returns how many were dropped. */
  invalidateIndexes(first: number, count: number): number {
    if (this.count === 0) return 0;
    let dropped = 0;
    if (count >= this.capacity) {
      // Every slot may hold one of them: look at each slot once.
      for (let slot = 0; slot < this.capacity; slot++) {
        const t = this.tag[slot]!;
        if (t !== 0 && t - 1 >= first && t - 1 < first + count) { this.tag[slot] = 0; dropped++; }
      }
    } else {
      for (let index = first; index < first + count; index++) {
        const slot = index & this.mask;
        if (this.tag[slot] === index + 1) { this.tag[slot] = 0; dropped++; }
      }
    }
    this.count -= dropped;
    return dropped;
  }

  // ---- snapshot (state/) ----

  save(): InterruptEntryCacheState {
    return { tag: numbersOf(this.tag), w0: numbersOf(this.w0), w1: numbersOf(this.w1), w2: numbersOf(this.w2), w3: numbersOf(this.w3) };
  }

  /** Checks a saved cache against this one's shape (each index in its own slot); touches nothing. */
  decode(s: Section): InterruptEntryCacheLoad {
    const n = this.capacity;
    const int32 = (key: string) => s.ints(key, n, -(2 ** 31), 2 ** 31 - 1, Int32Array);
    const state = { tag: s.ints("tag", n, 0, 0x1_0000, Int32Array), w0: int32("w0"), w1: int32("w1"), w2: int32("w2"), w3: int32("w3") };
    for (let slot = 0; slot < n; slot++) {
      const t = state.tag[slot]!;
      if (t !== 0 && ((t - 1) & this.mask) !== slot) s.fail(`tag[${slot}]: interrupt index ${t - 1} does not belong in slot ${slot}`);
    }
    return state;
  }

  load(state: InterruptEntryCacheLoad): void {
    this.tag.set(state.tag);
    this.w0.set(state.w0);
    this.w1.set(state.w1);
    this.w2.set(state.w2);
    this.w3.set(state.w3);
    let count = 0;
    for (let slot = 0; slot < this.capacity; slot++) if (state.tag[slot] !== 0) count++;
    this.count = count;
  }
}
