/**
 * The IOTLB (VT-d §6.2.3): leaf translations tagged by domain id, 4-way set associative, bounded,
 * evicting one entry at a time (round robin within a set). A negative entry (CM = 1 only,
 * VT-d §6.1) caches a faulting result: `reason` != 0. Everything lives in typed arrays: lookups
 * and fills allocate nothing.
 */
const WAYS = 4;
const INV_2_32 = 1 / 4294967296;
const INV_4K = 1 / 4096;
const INV_512 = 1 / 512;
/** Input page size of a leaf at each level. */
const SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30];

export class Iotlb {
  readonly capacity: number;
  private readonly setMask: number;
  private readonly valid: Uint8Array;
  private readonly did: Int32Array;
  /** Leaf level: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
  private readonly level: Uint8Array;
  /** Input page number at that level's page size. */
  private readonly page: Float64Array;
  /** Output address of the page. */
  private readonly output: Float64Array;
  /** Permission bits: 1 read, 2 write. */
  private readonly permission: Uint8Array;
  /** 0 for a translation; a fault reason for a negative entry. */
  private readonly reason: Uint8Array;
  private readonly nextVictim: Uint8Array;
  /** Live entries per leaf level, so lookups skip levels with nothing cached. */
  private readonly liveAtLevel = new Int32Array(4);
  count = 0;

  /** Result of the last successful lookup. */
  hitOutput = 0;
  /** Input address of the start of the hit page. */
  hitInputBase = 0;
  hitPermission = 0;
  hitReason = 0;
  hitLevel = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    const sets = capacity / WAYS;
    this.setMask = sets - 1;
    this.valid = new Uint8Array(capacity);
    this.did = new Int32Array(capacity);
    this.level = new Uint8Array(capacity);
    this.page = new Float64Array(capacity);
    this.output = new Float64Array(capacity);
    this.permission = new Uint8Array(capacity);
    this.reason = new Uint8Array(capacity);
    this.nextVictim = new Uint8Array(sets);
  }

  private setIndex(did: number, level: number, page: number): number {
    const lo = page >>> 0;
    const hi = (page * INV_2_32) >>> 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d) ^ (did << 8) ^ level, 0x9e3779b1);
    h ^= h >>> 15;
    return (h & this.setMask) * WAYS;
  }

  private find(did: number, level: number, page: number): number {
    const base = this.setIndex(did, level, page);
    for (let i = base; i < base + WAYS; i++) {
      if (this.valid[i] && this.page[i] === page && this.did[i] === did && this.level[i] === level) return i;
    }
    return -1;
  }

  /** Looks `address` up for domain `did`; on a hit fills the hit* fields and returns true. */
  lookup(did: number, address: number): boolean {
    if (this.count === 0) return false;
    const live = this.liveAtLevel;
    let page = Math.floor(address * INV_4K);
    if (live[1] !== 0 && this.hit(this.find(did, 1, page), 1, page)) return true;
    page = Math.floor(page * INV_512);
    if (live[2] !== 0 && this.hit(this.find(did, 2, page), 2, page)) return true;
    page = Math.floor(page * INV_512);
    return live[3] !== 0 && this.hit(this.find(did, 3, page), 3, page);
  }

  private hit(i: number, level: number, page: number): boolean {
    if (i < 0) return false;
    this.hitOutput = this.output[i]!;
    this.hitInputBase = page * SIZE[level]!;
    this.hitPermission = this.permission[i]!;
    this.hitReason = this.reason[i]!;
    this.hitLevel = level;
    return true;
  }

  insert(did: number, level: number, address: number, output: number, permission: number, reason: number): void {
    const page = Math.floor(address / SIZE[level]!);
    let i = this.find(did, level, page);
    if (i < 0) {
      const base = this.setIndex(did, level, page);
      i = -1;
      for (let w = base; w < base + WAYS; w++) if (!this.valid[w]) { i = w; break; }
      if (i < 0) {
        const set = base / WAYS;
        i = base + this.nextVictim[set]!;
        this.nextVictim[set] = (this.nextVictim[set]! + 1) % WAYS;
        this.drop(i);
      }
      this.valid[i] = 1;
      this.count++;
      this.liveAtLevel[level]!++;
    }
    this.did[i] = did;
    this.level[i] = level;
    this.page[i] = page;
    this.output[i] = output;
    this.permission[i] = permission;
    this.reason[i] = reason;
  }

  private drop(i: number): void {
    if (!this.valid[i]) return;
    this.valid[i] = 0;
    this.count--;
    this.liveAtLevel[this.level[i]!]!--;
  }

  invalidateAll(): number {
    const dropped = this.count;
    this.valid.fill(0);
    this.liveAtLevel.fill(0);
    this.count = 0;
    return dropped;
  }

  invalidateDomain(did: number): number {
    if (this.count === 0) return 0;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (this.valid[i] && this.did[i] === did) { this.drop(i); dropped++; }
    }
    return dropped;
  }

  /**
   * Page-selective invalidation of 2^am 4 KiB pages at `address` (aligned by the caller) in `did`:
   * every entry whose page overlaps the range goes, superpages included (VT-d §6.5.1.2).
   */
  invalidatePages(did: number, address: number, am: number): number {
    if (this.count === 0) return 0;
    const pages = 2 ** am;
    const end = address + pages * 4096;
    if (pages > 64) return this.invalidateRange(did, address, end);
    let dropped = 0;
    for (let level = 1; level <= 3; level++) {
      if (this.liveAtLevel[level] === 0) continue;
      const size = 2 ** (12 + 9 * (level - 1));
      for (let page = Math.floor(address / size); page * size < end; page++) {
        const i = this.find(did, level, page);
        if (i >= 0) { this.drop(i); dropped++; }
      }
    }
    return dropped;
  }

  private invalidateRange(did: number, start: number, end: number): number {
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (!this.valid[i] || this.did[i] !== did) continue;
      const size = 2 ** (12 + 9 * (this.level[i]! - 1));
      const first = this.page[i]! * size;
      if (first < end && first + size > start) { this.drop(i); dropped++; }
    }
    return dropped;
  }
}
