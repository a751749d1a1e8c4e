import { numbersOf, type Section } from "../state/codec.ts";

/** A context cache's contents as a snapshot holds them (arrays of numbers, one per slot). */
export interface ContextCacheState {
  tag: number[]; did: number[]; tableRoot: number[]; aw: number[]; inputLimit: number[];
  translationType: number[]; faultProcessingDisable: number[]; reason: number[]; fastInputLimit: number[];
}

/** A checked snapshot of a context cache, ready to load. */
export interface ContextCacheLoad {
  tag: Int32Array; did: Int32Array; tableRoot: Float64Array; aw: Uint8Array; inputLimit: Float64Array;
  translationType: Uint8Array; faultProcessingDisable: Uint8Array; reason: Uint8Array; fastInputLimit: Float64Array;
}

/**
 * The context cache (VT-d §6.2.2): context entries by source-id, direct mapped and bounded
 * (a new entry evicts the one in its slot). A negative entry (CM = 1 only) remembers a
 * not-present or invalid context and is tagged with domain 0, as the spec's caching mode says.
 */
export class ContextCache {
  readonly capacity: number;
  private readonly mask: number;
  /** Source-id + 1 of the entry in each slot; 0 = empty. */
  private readonly tag: Int32Array;
  readonly did: Int32Array;
  /** Second-stage table root. */
  readonly tableRoot: Float64Array;
  /** Context AW field (levels = aw + 2). */
  readonly aw: Uint8Array;
  /** First input address beyond what the entry translates: 2^min(MGAW, AGAW) (2^HAW for pass-through). */
  readonly inputLimit: Float64Array;
  readonly translationType: Uint8Array;
  readonly faultProcessingDisable: Uint8Array;
  /** 0 for a present, valid entry; a fault reason for a negative entry. */
  readonly reason: Uint8Array;
  /**
   * `inputLimit` for a present, valid entry that translates untranslated requests (TT 0), else 0:
   * one compare of the request address admits it to the unit's fast path.
   */
  readonly fastInputLimit: Float64Array;
  count = 0;
  /** Slots invalidations visited (host cost, for the queue's work budget). */
  work = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.tag = new Int32Array(capacity);
    this.did = new Int32Array(capacity);
    this.tableRoot = new Float64Array(capacity);
    this.aw = new Uint8Array(capacity);
    this.inputLimit = new Float64Array(capacity);
    this.translationType = new Uint8Array(capacity);
    this.faultProcessingDisable = new Uint8Array(capacity);
    this.reason = new Uint8Array(capacity);
    this.fastInputLimit = new Float64Array(capacity);
  }

  private slot(sid: number): number {
    return (sid ^ (sid >>> 8)) & this.mask;
  }

  /** Calls `visit` with the source-id and slot of every cached entry (debug views; allocates nothing itself). */
  forEachEntry(visit: (sid: number, slot: number) => void): void {
    for (let i = 0; i < this.capacity; i++) if (this.tag[i] !== 0) visit(this.tag[i]! - 1, i);
  }

  /** Slot index holding `sid`, or -1. */
  lookup(sid: number): number {
    const i = this.slot(sid);
    return this.tag[i] === sid + 1 ? i : -1;
  }

  /** Claims the slot for `sid` (evicting its occupant) and returns it for the caller to fill. */
  fill(sid: number): number {
    const i = this.slot(sid);
    if (this.tag[i] === 0) this.count++;
    this.tag[i] = sid + 1;
    return i;
  }

  invalidateAll(): number {
    const dropped = this.count;
    this.tag.fill(0);
    this.count = 0;
    return dropped;
  }

  invalidateDomain(did: number): number {
    this.work += this.capacity;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (this.tag[i] !== 0 && this.did[i] === did) { this.tag[i] = 0; this.count--; dropped++; }
    }
    return dropped;
  }

  /**
   * Device-selective: entries whose source-id matches `sid` with the function mask applied
   * (FM 1: ignore bit 2 of the function, 2: bits 2:1, 3: bits 2:0; VT-d §11.4.7.1).
   */
  invalidateDevice(sid: number, functionMask: number): number {
    this.work += this.capacity;
    const ignore = functionMask === 0 ? 0 : ((1 << functionMask) - 1) << (3 - functionMask);
    const want = sid & ~ignore;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      const t = this.tag[i]!;
      if (t !== 0 && ((t - 1) & ~ignore) === want) { this.tag[i] = 0; this.count--; dropped++; }
    }
    return dropped;
  }

  // ---- snapshot (state/) ----

  save(): ContextCacheState {
    return {
      tag: numbersOf(this.tag), did: numbersOf(this.did), tableRoot: numbersOf(this.tableRoot), aw: numbersOf(this.aw),
      inputLimit: numbersOf(this.inputLimit), translationType: numbersOf(this.translationType),
      faultProcessingDisable: numbersOf(this.faultProcessingDisable), reason: numbersOf(this.reason), fastInputLimit: numbersOf(this.fastInputLimit),
    };
  }

  /** Checks a saved context cache against this one's shape (each tag in its own slot); touches nothing. */
  decode(s: Section): ContextCacheLoad {
    const n = this.capacity;
    const state: ContextCacheLoad = {
      tag: s.ints("tag", n, 0, 0x1_0000, Int32Array),
      did: s.ints("did", n, 0, 0xffff, Int32Array),
      tableRoot: s.numbers("tableRoot", n, 0, 2 ** 64),
      aw: s.ints("aw", n, 0, 7, Uint8Array),
      inputLimit: s.numbers("inputLimit", n, 0, 2 ** 64),
      translationType: s.ints("translationType", n, 0, 3, Uint8Array),
      faultProcessingDisable: s.ints("faultProcessingDisable", n, 0, 1, Uint8Array),
      reason: s.ints("reason", n, 0, 0xff, Uint8Array),
      fastInputLimit: s.numbers("fastInputLimit", n, 0, 2 ** 64),
    };
    for (let i = 0; i < n; i++) {
      const t = state.tag[i]!;
      if (t !== 0 && this.slot(t - 1) !== i) s.fail(`tag[${i}]: source-id ${t - 1} does not belong in slot ${i}`);
      const fast = state.fastInputLimit[i]!;
      if (fast !== 0 && fast !== state.inputLimit[i]) s.fail(`fastInputLimit[${i}]: ${fast} is neither 0 nor the entry's inputLimit`);
    }
    return state;
  }

  load(state: ContextCacheLoad): void {
    this.tag.set(state.tag);
    this.did.set(state.did);
    this.tableRoot.set(state.tableRoot);
    this.aw.set(state.aw);
    this.inputLimit.set(state.inputLimit);
    this.translationType.set(state.translationType);
    this.faultProcessingDisable.set(state.faultProcessingDisable);
    this.reason.set(state.reason);
    this.fastInputLimit.set(state.fastInputLimit);
    let count = 0;
    for (let i = 0; i < this.capacity; i++) if (state.tag[i] !== 0) count++;
    this.count = count;
  }
}
