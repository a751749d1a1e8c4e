/**
 * Random guest programs: mostly what a driver does (root, context and page tables, SRTP, TE,
 * invalidations by register or queue, DMA near what is mapped), bent often enough to reach the
 * corners (missing or wrong invalidations, reserved bits, unsupported AW, FPD, garbage and
 * self-referencing tables, huge AM, addresses near 2^64, odd register accesses and values).
 */
import { Gcmd, IOTLB_OFFSET, IVA_OFFSET, Reg } from "../../src/spec/index.ts";
import { descriptorNoise, iovaNoise, notifyNoise, outputNoise, readNoise, registerNoise, requestNoise, timeNoise } from "./noise.ts";
import { dec, enc, hex64, Rng, type Config, type J, type Program, type Step } from "./program.ts";

const TE = Number(Gcmd.TE), SRTP = Number(Gcmd.SRTP), QIE = Number(Gcmd.QIE);
const SIDS = [0x0008, 0x0010, 0x0011, 0x0013, 0x0017, 0x0100, 0x0208, 0xff07];
const MiB = 1 << 20;

interface SidInfo {
  did: number;
  aw: number;
  slpt: number | undefined;
}

export class Generator {
  readonly steps: Step[] = [];
  readonly cfg: Config;
  private readonly pages: number;
  private used = new Set<number>();
  private tables: number[] = [];
  private mirror = new Map<number, bigint>();
  private te = false;
  private qie = false;
  private root: number | undefined;
  private ctxTables = new Map<number, number>();
  private sids: number[];
  private info = new Map<number, SidInfo>();
  private maps: { sid: number; iova: number; level: number }[] = [];
  private queue: { base: number; entries: number; tail: number } | undefined;
  private statusPage = 0;
  private assigned: number[] = [];

  constructor(private readonly r: Rng) {
    // Small, so that random addresses land both in RAM and outside, and a full compare is cheap.
    const ram = [MiB / 4, MiB / 2, MiB, 2 * MiB, 4 * MiB][r.weighted([35, 25, 25, 10, 5])]! + (r.chance(0.3) ? r.pick([2048, 4096, 16, 512]) : 0) - (r.chance(0.1) ? 4096 : 0);
    const cm = r.chance(0.5);
    this.cfg = {
      awBits: r.chance(0.6) ? 48 : 39,
      cachingMode: cm,
      negativeCaching: cm && r.chance(0.85),
      checker: r.chance(0.25),
      ram,
      faultRecords: r.pick([1, 1, 2, 4]),
      iotlbEntries: r.pick([4096, 4096, 16, 4]),
      contextCacheEntries: r.pick([256, 256, 4, 1]),
      passThrough: r.chance(0.85),
      queueDescriptorTimeMs: r.chance(0.15) ? r.pick([1, 5]) : 0,
      throwingInterrupt: r.chance(0.1),
      trace: r.chance(0.2),
    };
    this.pages = Math.floor(ram / 4096);
    const n = r.range(1, 3);
    this.sids = [];
    while (this.sids.length < n) {
      const s = r.pick(SIDS);
      if (!this.sids.includes(s)) this.sids.push(s);
    }
    for (const s of this.sids) this.info.set(s, { did: cm ? r.range(1, 3) : r.range(0, 3), aw: this.goodAw(), slpt: undefined });
  }

  private goodAw(): number {
    return this.cfg.awBits === 48 && this.r.chance(0.6) ? 2 : 1;
  }

  program(): Program {
    const r = this.r;
    if (r.chance(0.9)) this.prologue();
    const actions = r.range(3, 24);
    for (let i = 0; i < actions; i++) this.action();
    return { config: this.cfg, steps: this.steps };
  }

  // ---- emitting ----

  private alloc(): number {
    for (let tries = 0; tries < 8; tries++) {
      const page = this.r.int(this.pages);
      if (this.used.has(page)) continue;
      this.used.add(page);
      const at = page * 4096;
      this.steps.push({ op: "mz", addr: at, len: 4096 });
      return at;
    }
    return this.r.int(this.pages) * 4096;
  }

  private q(addr: number, ...vals: bigint[]): void {
    this.steps.push({ op: "mq", addr, vals: vals.map(hex64) });
    vals.forEach((v, i) => this.mirror.set(addr + i * 8, BigInt.asUintN(64, v)));
  }

  private reg(off: J, size: J, value: bigint | number): void {
    this.steps.push({ op: "w", off, size, value: enc(value) });
  }

  private reg64(off: number, value: bigint): void {
    if (this.r.chance(0.7)) this.reg(off, 8, value);
    else {
      this.reg(off, 4, value & 0xffff_ffffn);
      this.reg(off + 4, 4, value >> 32n);
    }
  }

  private gcmd(bits: number): void {
    this.reg(Reg.GCMD, 4, BigInt(((this.te ? TE : 0) | (this.qie ? QIE : 0) | bits) >>> 0));
  }

  // ---- a driver's work ----

  private prologue(): void {
    this.setRoot();
    for (const sid of this.sids) if (this.r.chance(0.8)) this.context(sid, true);
    if (this.r.chance(0.4)) this.queueSetup();
    for (let i = this.r.range(0, 3); i > 0; i--) this.map(this.r.pick(this.sids), false);
    this.invalidateContext(1, 0, 0, 0);
    this.invalidateIotlb(1, 0, 0n, 0, false);
    if (this.r.chance(0.9)) this.setTe(true);
  }

  private setRoot(): void {
    const r = this.r;
    if (this.root === undefined || r.chance(0.2)) {
      this.root = this.alloc();
      this.ctxTables.clear();
    }
    let value = BigInt(this.root);
    if (r.chance(0.06)) value |= BigInt(r.range(1, 3)) << 10n; // TTM other than legacy
    if (r.chance(0.05)) value |= 1n << BigInt(r.range(this.cfg.awBits, 63)); // bits >= HAW
    this.reg64(Reg.RTADDR, value);
    this.gcmd(SRTP);
  }

  private setTe(on: boolean): void {
    this.te = on;
    this.gcmd(0);
  }

  private context(sid: number, clean: boolean): void {
    const r = this.r;
    if (this.root === undefined) this.setRoot();
    const info = this.info.get(sid)!;
    const bus = sid >> 8;
    let table = this.ctxTables.get(bus);
    if (table === undefined) {
      table = this.alloc();
      this.ctxTables.set(bus, table);
      let lo = BigInt(table) | 1n, hi = 0n;
      if (!clean && r.chance(0.05)) lo |= BigInt(r.range(1, 0x7ff)) << 1n;
      if (!clean && r.chance(0.03)) hi = r.big64();
      if (!clean && r.chance(0.03)) lo &= ~1n;
      this.q(this.root! + bus * 16, lo, hi);
    }
    const shared = [...this.info.values()].find((o) => o !== info && o.did === info.did && o.slpt !== undefined);
    info.slpt = shared && r.chance(0.7) ? shared.slpt : info.slpt !== undefined && r.chance(0.5) ? info.slpt : this.alloc();
    if (shared?.slpt === info.slpt) info.aw = shared!.aw;
    let tt = 0n, fpd = 0n, present = 1n, aw = BigInt(info.aw), lo = 0n, hi = 0n;
    if (!clean) {
      const v = r.weighted([60, 10, 8, 5, 6, 5, 3, 3]);
      if (v === 1) tt = 2n;
      if (v === 2) fpd = 2n;
      if (v === 3) present = 0n;
      if (v === 4) aw = BigInt(r.pick(this.cfg.awBits === 39 ? [0, 2, 3, 7] : [0, 3, 4, 7]));
      if (v === 5) (r.chance(0.5) ? (lo = BigInt(r.range(1, 0xff)) << 4n) : (hi = BigInt(r.pick([0x80, 0x100_0000, 0x8000_0000]))));
      if (v === 6) tt = BigInt(r.pick([1, 3]));
      if (v === 7) ((tt = 2n), (aw = BigInt(r.pick([0, 7, 2, 3]))));
      if (r.chance(0.15)) fpd = 2n;
      if (r.chance(0.05)) hi |= BigInt(r.range(1, 15)) << 3n; // ignored bits 70:67
    }
    const did = BigInt(!clean && r.chance(0.05) ? r.range(0, 5) : info.did);
    this.q(table + (sid & 0xff) * 16, BigInt(info.slpt!) | (tt << 2n) | fpd | present | lo, aw | (did << 8n) | hi);
    if (!clean && r.chance(0.75)) {
      const kind = r.weighted([3, 2, 4]) + 1;
      this.invalidateContext(kind, kind === 3 && this.cfg.cachingMode && r.chance(0.6) ? 0 : info.did, sid, r.chance(0.8) ? 0 : r.range(1, 3));
      if (r.chance(0.8)) this.invalidateIotlb(r.chance(0.5) ? 1 : 2, r.chance(0.5) ? info.did : 0, 0n, 0, false);
    }
  }

  private pickIova(size: number, levels: number): number {
    return iovaNoise(this.r, size, levels, this.maps.length > 0 ? this.r.pick(this.maps).iova : 0);
  }

  private pickOutput(size: number): number {
    return outputNoise(this.r, size, this.pages * 4096, this.cfg.awBits);
  }

  private map(sid: number, invalidate: boolean): void {
    const r = this.r;
    const info = this.info.get(sid)!;
    if (info.slpt === undefined) this.context(sid, true);
    const levels = info.aw === 1 || info.aw === 2 ? info.aw + 2 : r.pick([3, 4]);
    const level = r.weighted([75, 17, 8]) + 1;
    const size = 2 ** (12 + 9 * (level - 1));
    const iova = this.pickIova(size, levels);
    let table = info.slpt!;
    for (let l = levels; l > level; l--) {
      const entry = table + (Math.floor(iova / 2 ** (12 + 9 * (l - 1))) % 512) * 8;
      const v = this.mirror.get(entry);
      if (v === undefined || (v & 3n) === 0n || (v & 0x80n) !== 0n || r.chance(0.03)) {
        const next = this.alloc();
        this.tables.push(next);
        let e = BigInt(next) | 3n;
        if (r.chance(0.04)) e = (e & ~3n) | BigInt(r.range(1, 2));
        if (r.chance(0.03)) e |= r.pick([0x800n, 1n << 62n, 1n << BigInt(r.range(this.cfg.awBits, 51)), 0x80n]);
        if (r.chance(0.05)) e |= r.pick([0x4n, 0x100n, 0x400n, 1n << 63n, 1n << 55n]); // ignored bits
        this.q(entry, e);
        table = next;
      } else table = Number(v & 0x000f_ffff_ffff_f000n);
    }
    const leaf = table + (Math.floor(iova / size) % 512) * 8;
    const perm = BigInt(r.pick([3, 3, 3, 3, 1, 1, 2, 0]));
    let e = BigInt(this.pickOutput(size)) | perm | (level > 1 ? 0x80n : 0n);
    if (r.chance(0.05)) e |= r.pick([0x800n, 1n << 62n, 1n << BigInt(r.range(this.cfg.awBits, 51)), level > 1 ? 0x1000n : 0x80n]);
    if (r.chance(0.08)) e |= r.pick([0x4n, 0x78n, 0x100n, 0x200n, 0x400n, 1n << 63n, 1n << 52n, 1n << 61n]); // ignored bits
    this.q(leaf, e);
    this.maps.push({ sid, iova, level });
    if (invalidate && r.chance(0.85)) this.invalidateAfterChange(sid, iova, level);
  }

  private invalidateAfterChange(sid: number, iova: number, level: number): void {
    const r = this.r;
    const did = this.info.get(sid)!.did;
    const v = r.weighted([70, 15, 10, 5]);
    if (v === 0) {
      let addr = BigInt(iova);
      if (r.chance(0.08)) addr |= 1n << BigInt(r.range(this.cfg.awBits, 63)); // bits >= MGAW: ignored
      const am = r.chance(0.85) ? 9 * (level - 1) : r.chance(0.7) ? r.range(0, 20) : r.range(21, 63);
      this.invalidateIotlb(3, r.chance(0.95) ? did : r.range(0, 4), addr, am, r.chance(0.2));
    } else if (v === 1) this.invalidateIotlb(2, did, 0n, 0, false);
    else if (v === 2) this.invalidateIotlb(1, 0, 0n, 0, false);
    else this.invalidateContext(3, did, sid, 0);
  }

  private modify(): void {
    const r = this.r;
    if (this.maps.length === 0) return this.map(r.pick(this.sids), true);
    const m = r.pick(this.maps);
    const info = this.info.get(m.sid)!;
    if (r.chance(0.3)) return this.map(m.sid, true); // maybe splitting a superpage or remapping
    // Find the leaf through the generator's own writes; if the walk breaks, write a new mapping.
    const levels = info.aw === 2 ? 4 : 3;
    let table = info.slpt ?? 0;
    for (let l = levels; l > m.level; l--) {
      const v = this.mirror.get(table + (Math.floor(m.iova / 2 ** (12 + 9 * (l - 1))) % 512) * 8);
      if (v === undefined) return this.map(m.sid, true);
      table = Number(v & 0x000f_ffff_ffff_f000n);
    }
    const size = 2 ** (12 + 9 * (m.level - 1));
    const leaf = table + (Math.floor(m.iova / size) % 512) * 8;
    const old = this.mirror.get(leaf) ?? 0n;
    const v = r.weighted([35, 35, 30]);
    const value = v === 0 ? 0n : v === 1 ? (old & ~3n) | BigInt(r.range(0, 3)) : BigInt(this.pickOutput(size)) | 3n | (m.level > 1 ? 0x80n : 0n);
    this.q(leaf, value);
    if (r.chance(0.85)) this.invalidateAfterChange(m.sid, m.iova, m.level);
  }

  // ---- invalidations ----

  private invalidateContext(g: number, did: number, sid: number, fm: number): void {
    const r = this.r;
    if (this.qie !== r.chance(0.05)) {
      this.submit([[1n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(sid) << 32n) | (BigInt(fm) << 48n), 0n]]);
    } else {
      this.reg64(Reg.CCMD, (1n << 63n) | (BigInt(g) << 61n) | (BigInt(fm) << 32n) | (BigInt(sid) << 16n) | BigInt(did));
    }
  }

  private invalidateIotlb(g: number, did: number, addr: bigint, am: number, ih: boolean): void {
    const r = this.r;
    const hi = addr | (ih ? 0x40n : 0n) | BigInt(am);
    if (this.qie !== r.chance(0.05)) {
      this.submit([[2n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (r.chance(0.3) ? 0xc0n : 0n), g === 3 ? hi : 0n]]);
    } else {
      if (g === 3) this.reg64(IVA_OFFSET, hi);
      this.reg64(IOTLB_OFFSET, (1n << 63n) | (BigInt(g) << 60n) | (BigInt(did) << 32n) | (r.chance(0.3) ? 3n << 48n : 0n));
    }
  }

  private queueSetup(): void {
    const r = this.r;
    const qs = r.chance(0.9) ? 0 : r.range(1, 7);
    const base = r.chance(0.95) ? this.alloc() : this.pages * 4096 - 4096;
    this.queue = { base, entries: 256 << qs, tail: 0 };
    this.statusPage = this.alloc();
    this.reg64(Reg.IQT, 0n);
    this.reg64(Reg.IQA, BigInt(base) | BigInt(qs) | (r.chance(0.03) ? 0x800n : 0n));
    this.qie = true;
    this.gcmd(0);
  }

  private submit(descriptors: [bigint, bigint][]): void {
    const r = this.r;
    if (!this.queue) this.queueSetup();
    const q = this.queue!;
    if (r.chance(0.6)) {
      const at = BigInt(this.statusPage + r.int(1024) * 4);
      descriptors.push([5n | (r.chance(0.3) ? 0x10n : 0n) | 0x20n | (r.chance(0.1) ? 0x40n : 0n) | (BigInt(r.u32()) << 32n), at]);
    }
    for (const [lo, hi] of descriptors) {
      if (q.base + q.tail * 16 + 16 <= this.pages * 4096) this.q(q.base + q.tail * 16, lo, hi);
      q.tail = (q.tail + 1) % q.entries;
    }
    this.reg(Reg.IQT, r.chance(0.8) ? 8 : 4, BigInt(q.tail) << 4n);
  }

  private randomDescriptors(): void {
    const dids = [0, ...[...this.info.values()].map((i) => i.did)];
    this.submit([descriptorNoise(this.r, dids, this.sids, BigInt(this.pickIova(4096, 4)), this.statusPage, this.cfg.awBits)]);
  }

  // ---- the rest of the guest's and the embedder's calls ----

  private dma(): void {
    const r = this.r;
    const last = [...this.steps].reverse().find((s) => s.op === "dma");
    if (last && r.chance(0.25)) {
      // The same request again: the second one meets what the first left in the caches.
      this.steps.push({ ...last, write: r.chance(0.5), tag: r.u32() });
      return;
    }
    this.steps.push(requestNoise(r, this.cfg.awBits, this.sids, this.maps, this.pages));
  }

  private garbage(): void {
    const r = this.r;
    const v = r.weighted([40, 30, 15, 15]);
    let addr: number;
    if (v === 0 && this.tables.length > 0) addr = r.pick(this.tables) + r.int(512) * 8;
    else if (v === 1 && this.root !== undefined) addr = r.chance(0.5) ? this.root + r.int(256) * 16 + r.pick([0, 8]) : [...this.ctxTables.values()].concat([this.root])[0]! + r.int(512) * 8;
    else if (v === 2 && this.queue) addr = this.queue.base + (this.queue.tail % this.queue.entries) * 16;
    else addr = r.int(this.pages * 4096 - 16);
    if (r.chance(0.1)) addr += r.range(1, 7);
    const vals: bigint[] = [];
    for (let i = r.range(1, 2); i > 0; i--) vals.push(r.chance(0.5) ? r.big64() : BigInt(r.int(this.pages) * 4096) | BigInt(r.int(4096)));
    this.q(addr, ...vals);
  }

  private selfReference(): void {
    const r = this.r;
    const table = this.tables.length > 0 && r.chance(0.7) ? r.pick(this.tables) : this.info.get(r.pick(this.sids))!.slpt;
    if (table === undefined) return;
    // Rarely a whole table of entries pointing at itself (2^48 bytes mapped by one page).
    const count = r.chance(0.05) ? 512 : r.chance(0.2) ? r.range(2, 16) : 1;
    const first = r.int(512 - count + 1);
    const vals = new Array<bigint>(count).fill(BigInt(table) | 3n);
    this.q(table + first * 8, ...vals);
  }

  private registerWrite(): void {
    const step = registerNoise(this.r, this.cfg.faultRecords, this.pages);
    this.steps.push(step);
    const value = dec(step.value);
    if (step.off === Reg.GCMD && (step.size === 4 || step.size === 8) && typeof value === "bigint") {
      this.te = (value & BigInt(TE)) !== 0n;
      this.qie = (value & BigInt(QIE)) !== 0n;
    }
  }

  private push(step: Step): void {
    this.steps.push(step);
  }

  private action(): void {
    const r = this.r;
    const cm = this.cfg.cachingMode;
    const weights = [10, 8, 12, 8, 20, 8, 3, 9, 5, 3, 3, 4, cm ? 3 : 0.3, cm ? 2 : 0.3, this.assigned.length > 0 ? 4 : 0, 0.7, 2, 1.5];
    switch (r.weighted(weights)) {
      case 0: return this.map(r.pick(this.sids), true);
      case 1: return this.modify();
      case 2: return this.invalidateRandom();
      case 3: return this.context(r.pick(this.sids), false);
      case 4: return this.dma();
      case 5: return this.garbage();
      case 6: return this.selfReference();
      case 7: return this.registerWrite();
      case 8: return this.push(readNoise(r, this.cfg.faultRecords));
      case 9: return this.push(timeNoise(r));
      case 10: return r.chance(0.5) ? this.queueSetup() : this.randomDescriptors();
      case 11: return this.randomDescriptors();
      case 12: {
        const sid = r.pick(this.sids);
        this.assigned.push(sid);
        return this.push({ op: "assign", sid });
      }
      case 13: return this.push(notifyNoise(r, this.cfg.awBits, this.sids));
      case 14: {
        const m = this.maps.length > 0 ? r.pick(this.maps) : undefined;
        const iova = m ? m.iova + r.int(4096) : r.int(this.pages * 4096);
        return this.push({ op: "vdma", sid: r.pick(this.assigned), iova, len: r.pick([1, 4, 64, 4096, 5000]), write: r.chance(0.5), tag: r.u32() });
      }
      case 15:
        this.steps.push({ op: "reset" });
        this.te = this.qie = false;
        this.queue = undefined;
        return;
      case 16: return r.chance(0.5) ? this.setRoot() : this.setTe(!this.te);
      case 17: return this.qie ? ((this.qie = false), this.gcmd(0)) : this.queueSetup();
    }
  }

  private invalidateRandom(): void {
    const r = this.r;
    const dids = [...this.info.values()].map((i) => i.did);
    if (r.chance(0.4)) {
      const g = r.chance(0.05) ? 0 : r.range(1, 3);
      this.invalidateContext(g, r.chance(0.8) ? r.pick(dids) : 0, r.pick(this.sids), r.chance(0.7) ? 0 : r.range(1, 3));
    } else {
      const g = r.chance(0.03) ? 0 : r.range(1, 3);
      const m = this.maps.length > 0 ? r.pick(this.maps) : undefined;
      const am = r.chance(0.8) ? r.range(0, 9) : r.range(10, 63);
      this.invalidateIotlb(g, r.chance(0.8) ? r.pick(dids) : r.range(0, 5), BigInt(m ? m.iova : this.pickIova(4096, 4)), am, r.chance(0.2));
    }
  }
}

export function generate(seed: number): Program {
  return new Generator(new Rng(seed)).program();
}
