/**
 * A seeded random mapping workload for the guest driver, and the model of what it meant to map:
 * 4 KiB ranges, 2 MiB and 1 GiB superpages, unmaps, remaps with other permissions, and
 * superpage splits (unmapping part of a superpage, which the driver splits). The sequence of
 * operations depends only on the seed, never on the driver's mode, so the same workload can be
 * run under strict, lazy and batched unmapping and compared.
 */
import type { Access, PageSize, VtdDriver } from "../../src/guest-driver/driver.ts";
import type { Domain } from "../../src/guest-driver/domain.ts";

const K4 = 4096, M2 = 2 ** 21, G1 = 2 ** 30;

/** Guest RAM the workload maps for data: [32 MiB, 64 MiB) (the driver's tables live below). */
export const DATA_START = 32 << 20;
export const DATA_END = 64 << 20;
/** IOVA regions: 4 KiB mappings, 2 MiB pages, 1 GiB pages. */
const SMALL = { start: 0x100_0000, size: 256 << 20 };
const LARGE = { start: G1, size: G1 };
const HUGE = { start: 512 * G1, size: 8 * G1 };
const MAX_INTERVALS = 40;

export interface Interval {
  start: number;
  end: number;
  /** Guest-physical address of `start`. */
  phys: number;
  /** Read 1, write 2. */
  permission: number;
  largestPage: PageSize;
}

export type StepKind = "map 4K" | "map 2M" | "map 1G" | "unmap" | "split" | "remap";

const ACCESS: Record<number, Access> = { 1: "r", 2: "w", 3: "rw" };

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class RandomWorkload {
  /** What the driver was asked to map, as disjoint intervals. */
  readonly mapped: Interval[] = [];
  /** Ranges unmapped by the last step (probed: they must fault once invalidated). */
  lastUnmapped: { start: number; end: number }[] = [];
  readonly counts: Record<StepKind, number> = { "map 4K": 0, "map 2M": 0, "map 1G": 0, unmap: 0, split: 0, remap: 0 };
  readonly random: () => number;

  constructor(seed: number, private readonly driver: VtdDriver, private readonly domain: Domain) {
    this.random = mulberry32(seed);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private permission(): number {
    return 1 + Math.floor(this.random() * 3);
  }

  private free(start: number, end: number): boolean {
    return !this.mapped.some((m) => m.start < end && start < m.end);
  }

  lookup(iova: number): Interval | undefined {
    return this.mapped.find((m) => iova >= m.start && iova < m.end);
  }

  /** One random operation; returns what it was (a failed pick becomes a 4 KiB map). */
  step(): StepKind {
    this.lastUnmapped = [];
    // Kept bounded: past MAX_INTERVALS, unmaps take over; at most two 1 GiB pages at a time.
    let r = this.random();
    if (this.mapped.length > MAX_INTERVALS && r < 0.45) r = 0.5;
    const superpages = this.mapped.filter((m) => m.largestPage !== "4K" && m.end - m.start >= M2);
    const huge = this.mapped.filter((m) => m.largestPage === "1G").length;
    if (r < 0.3 || this.mapped.length === 0) return this.map4K();
    if (r < 0.42) return this.mapLarge("2M");
    if (r < 0.45) return huge < 2 ? this.mapLarge("1G") : this.mapLarge("2M");
    if (r < 0.68) return this.unmapOne();
    if (r < 0.84 && superpages.length > 0) return this.split(this.pick(superpages));
    if (r < 0.84) return this.map4K();
    return this.remap();
  }

  private map(interval: Interval, kind: StepKind): StepKind {
    this.driver.map(this.domain, interval.start, interval.phys, interval.end - interval.start, ACCESS[interval.permission]!, { largestPage: interval.largestPage });
    this.mapped.push(interval);
    this.counts[kind]++;
    return kind;
  }

  private map4K(): StepKind {
    for (let attempt = 0; attempt < 20; attempt++) {
      const pages = 1 + Math.floor(this.random() * 8);
      const start = SMALL.start + Math.floor(this.random() * (SMALL.size / K4 - pages)) * K4;
      const end = start + pages * K4;
      if (!this.free(start, end)) continue;
      const phys = DATA_START + Math.floor(this.random() * ((DATA_END - DATA_START) / K4 - pages)) * K4;
      return this.map({ start, end, phys, permission: this.permission(), largestPage: "4K" }, "map 4K");
    }
    return "map 4K";
  }

  private mapLarge(page: "2M" | "1G"): StepKind {
    const size = page === "2M" ? M2 : G1;
    const region = page === "2M" ? LARGE : HUGE;
    for (let attempt = 0; attempt < 20; attempt++) {
      const count = page === "2M" ? 1 + Math.floor(this.random() * 2) : 1;
      const start = region.start + Math.floor(this.random() * (region.size / size - count)) * size;
      const end = start + count * size;
      if (!this.free(start, end)) continue;
      // 2 MiB pages map data RAM; 1 GiB pages map guest-physical 0 (RAM, then nothing).
      const phys = page === "2M" ? DATA_START + Math.floor(this.random() * ((DATA_END - DATA_START) / M2 - count + 1)) * M2 : 0;
      return this.map({ start, end, phys, permission: this.permission(), largestPage: page }, page === "2M" ? "map 2M" : "map 1G");
    }
    return this.map4K();
  }

  private remove(interval: Interval, start: number, end: number): void {
    this.driver.unmap(this.domain, start, end - start);
    const index = this.mapped.indexOf(interval);
    this.mapped.splice(index, 1);
    // What is left of a split 1 GiB page is made of 2 MiB pages (and one table of 4 KiB pages).
    const left = (s: number, e: number): Interval => ({
      ...interval, start: s, end: e, phys: interval.phys + (s - interval.start), largestPage: interval.largestPage === "1G" ? "2M" : interval.largestPage,
    });
    if (interval.start < start) this.mapped.push(left(interval.start, start));
    if (end < interval.end) this.mapped.push(left(end, interval.end));
    this.lastUnmapped.push({ start, end });
  }

  private unmapOne(): StepKind {
    const victim = this.pick(this.mapped);
    this.remove(victim, victim.start, victim.end);
    this.counts.unmap++;
    return "unmap";
  }

  /** Unmaps a few 4 KiB pages inside a superpage-backed interval: the driver splits the page. */
  private split(interval: Interval): StepKind {
    const pages = 1 + Math.floor(this.random() * 3);
    const start = interval.start + Math.floor(this.random() * ((interval.end - interval.start) / K4 - pages)) * K4;
    this.remove(interval, start, start + pages * K4);
    this.counts.split++;
    return "split";
  }

  private remap(): StepKind {
    const victim = this.pick(this.mapped);
    this.remove(victim, victim.start, victim.end);
    let permission = this.permission();
    if (permission === victim.permission) permission = (permission % 3) + 1;
    return this.map({ ...victim, permission }, "remap");
  }

  /** IOVAs worth checking now: ends and a random page of every interval, what was just unmapped, and never-mapped ones. */
  probes(): number[] {
    const out: number[] = [];
    for (const m of this.mapped) {
      out.push(m.start, m.end - K4, m.start + Math.floor(this.random() * ((m.end - m.start) / K4)) * K4);
    }
    for (const u of this.lastUnmapped) out.push(u.start, u.end - K4);
    for (let i = 0; i < 4; i++) out.push(SMALL.start + Math.floor(this.random() * (SMALL.size / K4)) * K4);
    out.push(LARGE.start + Math.floor(this.random() * (LARGE.size / K4)) * K4, HUGE.start + Math.floor(this.random() * (HUGE.size / K4)) * K4);
    return out;
  }
}
