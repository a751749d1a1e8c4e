/**
 * The guest tables one notifier sync has walked, to find a table it meets again (a table shared
 * by several parent entries, or one that points to itself). Slots are stamped with the sync they
 * belong to, so starting a sync clears nothing and adding allocates nothing:
 * - tables in RAM (the only ones whose entries can lead anywhere): one stamp per 4 KiB page of
 *   RAM, indexed by page number (4 bytes per page: 64 KiB for 64 MiB, 4 MiB for 4 GiB of RAM),
 *   allocated at the first sync;
 * - anywhere else: an open-addressing hash set that doubles only when a sync meets more such
 *   tables than any before it (a sync meets at most `notifierTableLimit` tables).
 */
import { TWO_POW_32 } from "../../spec/numbers.ts";

/** Pages of RAM the direct stamps cover at most (4 GiB); tables above go to the hash set. */
const MAX_DIRECT_PAGES = 1 << 20;

export class TableSet {
  /** Distinct tables added since `clear`. */
  size = 0;
  private direct: Uint32Array | undefined;
  private readonly directPages: number;
  private keys: Float64Array;
  private stamps: Uint32Array;
  private shift: number;
  private mask: number;
  private hashed = 0;
  private stamp = 1;

  constructor(ramBytes: number, capacity = 64) {
    this.directPages = Math.min(MAX_DIRECT_PAGES, Math.ceil(Math.max(0, ramBytes) / 4096));
    const bits = Math.max(4, Math.ceil(Math.log2(capacity)));
    this.keys = new Float64Array(1 << bits);
    this.stamps = new Uint32Array(1 << bits);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
  }

  /** Empties the set (one counter moves; the stamps are reset only when it wraps). */
  clear(): void {
    this.size = 0;
    this.hashed = 0;
    if (++this.stamp === 0xffff_ffff) {
      this.direct?.fill(0);
      this.stamps.fill(0);
      this.stamp = 1;
    }
  }

  /** Adds the table at `address` (4 KiB aligned, below 2^52); false when it was there already. */
  add(address: number): boolean {
    const page = address / 4096;
    if (page < this.directPages) {
      const direct = (this.direct ??= new Uint32Array(this.directPages));
      if (direct[page] === this.stamp) return false;
      direct[page] = this.stamp;
      this.size++;
      return true;
    }
    if (this.hashed * 2 >= this.mask) this.grow();
    return this.insert(page);
  }

  private insert(page: number): boolean {
    const keys = this.keys, stamps = this.stamps, stamp = this.stamp, mask = this.mask;
    // Fibonacci hashing of the page number's two halves: the top bits index the table.
    let i = Math.imul((page >>> 0) ^ Math.imul((page / TWO_POW_32) >>> 0, 0x85eb_ca6b), 0x9e37_79b1) >>> this.shift;
    for (;;) {
      if (stamps[i] !== stamp) {
        stamps[i] = stamp;
        keys[i] = page;
        this.hashed++;
        this.size++;
        return true;
      }
      if (keys[i] === page) return false;
      i = (i + 1) & mask;
    }
  }

  private grow(): void {
    const keys = this.keys, stamps = this.stamps, stamp = this.stamp;
    const bits = 33 - this.shift;
    this.keys = new Float64Array(1 << bits);
    this.stamps = new Uint32Array(1 << bits);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    // The new arrays hold stamp 0 everywhere: re-stamp the live keys with the current stamp.
    this.size -= this.hashed;
    this.hashed = 0;
    for (let i = 0; i < keys.length; i++) if (stamps[i] === stamp) this.insert(keys[i]!);
  }
}
