/**
 * The fuzz oracle's model of the unit, written from the spec apart from the unit's code: the
 * registers a guest programs (GCMD, RTADDR, CCMD, IVA/IOTLB, the invalidation queue), the
 * invalidations they cause, and which translations a DMA may use (cache validity):
 *
 * - a context result is valid for a requester id from the moment the unit could have walked it
 *   (a DMA of that id) until a context-cache invalidation covering it (global; domain of its
 *   DID; device of its SID under FM and its DID), SRTP, a change of TE or reset;
 * - a second-stage result is valid under the DID of the context it was walked with, until an
 *   IOTLB invalidation covering it (global; domain; page-selective overlapping its page or
 *   superpage, ADDR bits >= MGAW ignored), SRTP, TE or reset;
 * - without CM only usable results are ever valid; with CM=1 faulting ones too (VT-d §6.1),
 *   context faults filed under DID 0.
 *
 * SRTP and TE count as invalidating everything, as the unit documents (docs/conformance.md);
 * IH is modelled as leaving no paging-structure cache behind (the unit keeps none).
 * When the unit's own answer (CAIG/IAIG, IQH) says it did more than the spec asks, that is
 * counted too: a cache may always drop more.
 */
import { Ccmd, ContextCacheDesc, DescriptorType, DeviceTlbDesc, Gcmd, Gsts, InterruptEntryCacheDesc, IotlbDesc, IOTLB_OFFSET, IVA_OFFSET, Reg, WaitDesc } from "../../src/spec/index.ts";
import { walkContext, walkPages, inputLimit, pageFaults, inInterruptRange, F, type Ctx, type Mem, type Page, type Shape } from "./walk.ts";

export type Inval =
  | { k: "all"; why: string }
  | { k: "ctx-global" }
  | { k: "ctx-domain"; did: number }
  | { k: "ctx-device"; sid: number; fm: number; did: number }
  | { k: "tlb-global" }
  | { k: "tlb-domain"; did: number }
  | { k: "tlb-page"; did: number; start: number; end: number };

/** A wait descriptor's status write (see Oracle.statusWrites). */
export interface StatusWrite {
  address: number;
  data: number;
  old: number;
  after: number;
}

/** What one piece of a DMA may do: move through `out`, or fault with one of `reasons`. */
export type Outcome =
  | { kind: "map"; out: number }
  | { kind: "fault"; reasons: number[]; fpd: boolean; qualified: boolean };

export interface Problem {
  check: string;
  message: string;
}

const TTM_SHIFT = 10n;
const SIZE_OF_LEVEL = [0, 2 ** 12, 2 ** 21, 2 ** 30];

export class Oracle {
  te = false;
  rootTable = 0;
  ttm = 0;
  qies = false;
  /** Last value written to each dword the oracle needs (RTADDR, CCMD, IVA). */
  private dwords = new Map<number, number>();
  private ctxValid = new Map<number, Map<string, Ctx>>();
  private tlbValid = new Map<number, Map<string, Map<string, Page>>>();
  private queue = { base: 0, entries: 256, head: 0 };
  private pendingCcmd: { cirg: number; fm: number; sid: number; did: number; qies: boolean } | undefined;
  private pendingIotlb: { iirg: number; did: number; iva: bigint; qies: boolean } | undefined;
  /** Invalidations of the step in progress, in order. */
  events: Inval[] = [];
  /**
   * Wait-descriptor status writes of the step, in order (the oracle's copy of RAM has them).
   * `old` is what the dword held before; `after` is how many of the step's invalidations
   * (`events`) came before the write: a sync at an earlier invalidation saw the old value.
   */
  statusWrites: StatusWrite[] = [];
  problems: Problem[] = [];
  /** A followed register got a value outside the API (NaN, fractional): only throws, time and the clock are checked from then on. */
  lenient = false;
  /** The unit may have written RAM in a way the oracle cannot follow (this step). */
  lostTrackOfRam = false;
  /** No SRTP since power-on or reset: which root table and TTM the unit uses is undefined. */
  rootKnown = false;

  constructor(readonly mem: Mem, readonly u: Shape, readonly windowSize: number) {}

  // ---- registers ----

  /** The guest writes a register (before the unit sees it); dword effects as the README's write rule says. */
  write(off: number | bigint, size: number | bigint, value: number | bigint): void {
    if ((size !== 4 && size !== 8) || typeof off !== "number" || !Number.isSafeInteger(off) || off < 0 || off % size !== 0 || off + size > this.windowSize) return;
    if (typeof value !== "bigint" && !Number.isInteger(value)) {
      // Not a value a register can take (NaN, fractional, infinite): what the unit makes of it is
      // its own affair, so a register the oracle follows makes the rest of the program unknowable.
      const followed = [Reg.GCMD, Reg.RTADDR, Reg.RTADDR + 4, Reg.CCMD, Reg.CCMD + 4, IVA_OFFSET, IVA_OFFSET + 4, IOTLB_OFFSET + 4];
      if (followed.some((d) => d >= off && d < off + size)) this.lenient = true;
      return;
    }
    const v = BigInt.asUintN(64, BigInt(value));
    const lo = Number(v & 0xffff_ffffn), hi = Number(v >> 32n);
    this.dwords.set(off, lo);
    if (size === 8) this.dwords.set(off + 4, hi);
    this.act(off, lo);
    if (size === 8) this.act(off + 4, hi);
  }

  private qword(off: number): bigint {
    return (BigInt(this.dwords.get(off + 4) ?? 0) << 32n) | BigInt(this.dwords.get(off) ?? 0);
  }

  private act(off: number, x: number): void {
    if (off === Reg.GCMD) {
      if (((x & Number(Gcmd.TE)) !== 0) !== this.te) {
        this.te = !this.te;
        this.events.push({ k: "all", why: this.te ? "TE on" : "TE off" });
      }
      if ((x & Number(Gcmd.SRTP)) !== 0) {
        const rtaddr = this.qword(Reg.RTADDR);
        this.rootTable = Number(rtaddr & ((1n << BigInt(this.u.haw)) - 1n) & ~0xfffn);
        this.ttm = Number((rtaddr >> TTM_SHIFT) & 3n);
        this.rootKnown = true;
        this.events.push({ k: "all", why: "SRTP" });
      }
    } else if (off === Reg.CCMD + 4 && (x & 0x8000_0000) !== 0) {
      const low = this.dwords.get(Reg.CCMD) ?? 0;
      this.pendingCcmd = { cirg: (x >>> 29) & 3, fm: x & 3, sid: low >>> 16, did: low & 0xffff, qies: this.qies };
    } else if (off === IOTLB_OFFSET + 4 && (x & 0x8000_0000) !== 0) {
      this.pendingIotlb = { iirg: (x >>> 28) & 3, did: x & 0xffff, iva: this.qword(IVA_OFFSET), qies: this.qies };
    }
  }

  reset(): void {
    this.te = false;
    this.rootTable = 0;
    this.ttm = 0;
    this.rootKnown = false;
    this.dwords.clear();
    this.events.push({ k: "all", why: "reset" });
  }

  /**
   * After each step: what the unit says it did (GSTS, IQH, CAIG/IAIG) turned into invalidations,
   * and the spec's demands on it checked. `read` reads one of the unit's registers.
   */
  afterStep(read: (off: number, size: 4 | 8) => bigint): void {
    const gsts = Number(read(Reg.GSTS, 4));
    if (((gsts & Number(Gsts.TES)) !== 0) !== this.te) {
      this.problems.push({ check: "register", message: `GSTS.TES = ${(gsts >>> 31) & 1} but TE was last written ${this.te ? 1 : 0} (GCMD is persistent for TE)` });
    }
    const qies = (gsts & Number(Gsts.QIES)) !== 0;
    if (qies && !this.qies) {
      const iqa = read(Reg.IQA, 8);
      this.queue = { base: Number(iqa & ((1n << BigInt(this.u.haw)) - 1n) & ~0xfffn), entries: 256 << Number(iqa & 7n), head: 0 };
    }
    if (qies) {
      const head = Number((read(Reg.IQH, 8) >> 4n) & 0x7fffn) % this.queue.entries;
      this.processQueue(head);
      this.queue.head = head;
    } else if (this.qies && this.queue.head !== Number((read(Reg.IQT, 8) >> 4n) & 0x7fffn) % this.queue.entries) {
      // QI went off with descriptors pending: how many the unit ran first, IQH (now 0) no longer
      // tells. Nothing is counted for them (the permissive side) and RAM is taken as it is.
      this.lostTrackOfRam = true;
    }
    this.qies = qies;
    if (this.pendingCcmd) {
      const c = this.pendingCcmd;
      this.pendingCcmd = undefined;
      const caig = Number((read(Reg.CCMD, 8) >> BigInt(Ccmd.CAIG.shift)) & 3n);
      const required = !c.qies && c.cirg !== 0 && this.ttm === 0 && (this.qword(Reg.RTADDR) & 0xc00n) === 0n;
      if (caig === 0 && required) this.problems.push({ check: "register", message: `CCMD with CIRG=${c.cirg} (QI off) refused: CAIG = 00` });
      if (caig !== 0) {
        if (c.cirg !== 0) this.contextInvalidation(c.cirg, c.did, c.sid, c.fm);
        if (caig !== c.cirg) this.contextInvalidation(caig, c.did, c.sid, c.fm);
      }
    }
    if (this.pendingIotlb) {
      const t = this.pendingIotlb;
      this.pendingIotlb = undefined;
      const iaig = Number((read(IOTLB_OFFSET, 8) >> 57n) & 3n);
      const am = Number(t.iva & 0x3fn);
      const valid = t.iirg !== 0 && !(t.iirg === 3 && (am > this.u.mamv || !this.u.psi));
      if (iaig === 0 && valid && !t.qies && this.ttm === 0 && (this.qword(Reg.RTADDR) & 0xc00n) === 0n) {
        this.problems.push({ check: "register", message: `IOTLB command IIRG=${t.iirg} (AM=${am}, QI off) refused: IAIG = 00` });
      }
      if (iaig !== 0) {
        if (valid) this.iotlbInvalidation(t.iirg, t.did, t.iva);
        if (iaig !== t.iirg && iaig !== 3) this.iotlbInvalidation(iaig, t.did, 0n);
      }
    }
  }

  private processQueue(head: number): void {
    const q = this.queue;
    let i = q.head;
    let guard = q.entries;
    while (i !== head && guard-- > 0) {
      const at = q.base + i * 16;
      if (!this.mem.has(at, 16)) {
        this.problems.push({ check: "queue", message: `IQH moved past descriptor ${i} at 0x${at.toString(16)}, outside RAM` });
        break;
      }
      const lo = (BigInt(this.mem.u32(at + 4)) << 32n) | BigInt(this.mem.u32(at));
      const hi = (BigInt(this.mem.u32(at + 12)) << 32n) | BigInt(this.mem.u32(at + 8));
      this.descriptor(i, lo, hi);
      i = (i + 1) % q.entries;
    }
  }

  /** One descriptor the unit says it processed (IQH moved past it), VT-d §6.5.2. */
  private descriptor(index: number, lo: bigint, hi: bigint): void {
    const type = Number(lo & 0xfn) | (Number((lo >> 9n) & 7n) << 4);
    const bad = (why: string): void => {
      this.problems.push({ check: "queue", message: `IQH moved past an invalid descriptor #${index} (${why}): ${lo.toString(16)} ${hi.toString(16)}` });
    };
    const g = Number((lo >> 4n) & 3n);
    switch (type) {
      case DescriptorType.ContextCache:
        if ((lo & ContextCacheDesc.RESERVED_LO) !== 0n || hi !== 0n) return bad("reserved bits");
        if (g === 0) return bad("G = 0");
        return this.contextInvalidation(g, Number((lo >> 16n) & 0xffffn), Number((lo >> 32n) & 0xffffn), Number((lo >> 48n) & 3n));
      case DescriptorType.Iotlb: {
        if ((lo & IotlbDesc.RESERVED_LO) !== 0n || (hi & IotlbDesc.RESERVED_HI) !== 0n) return bad("reserved bits");
        if (g === 0) return bad("G = 0");
        if (g === 3 && !this.u.psi) return bad("page-selective without CAP.PSI");
        if (g === 3 && Number(hi & 0x3fn) > this.u.mamv) return; // AM > MAMV: undefined, nothing counted
        return this.iotlbInvalidation(g, Number((lo >> 16n) & 0xffffn), hi);
      }
      case DescriptorType.DeviceTlb:
        if (!this.u.dt) return bad("device-TLB descriptor without ECAP.DT");
        if ((lo & DeviceTlbDesc.RESERVED_LO) !== 0n || (hi & DeviceTlbDesc.RESERVED_HI) !== 0n) return bad("reserved bits");
        return;
      case DescriptorType.InterruptEntryCache:
        if ((lo & InterruptEntryCacheDesc.RESERVED_LO) !== 0n || hi !== 0n) return bad("reserved bits");
        return;
      case DescriptorType.InvalidationWait: {
        if ((lo & WaitDesc.RESERVED_LO) !== 0n || (hi & WaitDesc.RESERVED_HI) !== 0n) return bad("reserved bits");
        if ((lo & (1n << 5n)) !== 0n) {
          const address = Number(hi & ((1n << BigInt(this.u.haw)) - 1n) & ~3n);
          const data = Number(lo >> 32n);
          if (this.mem.has(address, 4)) {
            const old = this.mem.u32(address);
            this.mem.setU32(address, data);
            this.statusWrites.push({ address, data, old, after: this.events.length });
          }
        }
        return;
      }
      default:
        return bad(`type ${type}`);
    }
  }

  private contextInvalidation(g: number, did: number, sid: number, fm: number): void {
    if (g === 1) this.events.push({ k: "ctx-global" });
    else if (g === 2) this.events.push({ k: "ctx-domain", did });
    else if (g === 3) this.events.push({ k: "ctx-device", sid, fm, did });
  }

  /** `addr` is the IVA register or the descriptor's high qword: ADDR 63:12 (bits >= MGAW ignored), IH 6, AM 5:0. */
  private iotlbInvalidation(g: number, did: number, addr: bigint): void {
    if (g === 1) this.events.push({ k: "tlb-global" });
    else if (g === 2) this.events.push({ k: "tlb-domain", did });
    else if (g === 3) {
      const am = Number(addr & 0x3fn);
      const size = 2 ** (12 + am);
      const address = Number(addr & ((1n << BigInt(this.u.mgaw)) - 1n) & ~0xfffn);
      const start = size > 2 ** 52 ? 0 : address - (address % size);
      this.events.push({ k: "tlb-page", did, start, end: start + size });
    }
  }

  /** Applies the step's invalidations to the cache-validity model. */
  applyEvents(): void {
    for (const e of this.events) {
      switch (e.k) {
        case "all":
        case "ctx-global":
          this.ctxValid.clear();
          if (e.k === "all") this.tlbValid.clear();
          break;
        case "ctx-domain":
          for (const m of this.ctxValid.values()) for (const [key, c] of m) if (c.tag === e.did) m.delete(key);
          break;
        case "ctx-device": {
          const mask = ~[0, 4, 6, 7][e.fm]! & 0xffff;
          for (const [sid, m] of this.ctxValid) {
            if ((sid & mask) !== (e.sid & mask)) continue;
            for (const [key, c] of m) if (c.tag === e.did) m.delete(key);
          }
          break;
        }
        case "tlb-global":
          this.tlbValid.clear();
          break;
        case "tlb-domain":
          this.tlbValid.delete(e.did);
          break;
        case "tlb-page": {
          const m = this.tlbValid.get(e.did);
          if (!m) break;
          for (const region of m.keys()) {
            const [level, base] = region.split(":").map(Number) as [number, number];
            if (base < e.end && base + SIZE_OF_LEVEL[level]! > e.start) m.delete(region);
          }
          break;
        }
      }
    }
  }

  // ---- translations ----

  /** Every context a DMA of `sid` may use now: a fresh walk, or one valid since it was seen. */
  contexts(sid: number): Ctx[] {
    const fresh = walkContext(this.mem, this.u, this.rootTable, sid);
    const valid = this.ctxValid.get(sid);
    if (!valid) return fresh;
    const all = new Map<string, Ctx>();
    for (const c of fresh) all.set(c.key, c);
    for (const c of valid.values()) all.set(c.key, c);
    return [...all.values()];
  }

  private pages(c: Ctx & { ok: true }, address: number): Page[] {
    const out = [walkPages(this.mem, this.u, c.root, c.aw, address)];
    const m = this.tlbValid.get(c.did);
    if (m) {
      for (let level = 1; level <= 3; level++) {
        const size = SIZE_OF_LEVEL[level]!;
        const cached = m.get(`${level}:${address - (address % size)}`);
        if (cached) for (const p of cached.values()) if (p.key !== out[0]!.key) out.push(p);
      }
    }
    return out;
  }

  /** What the piece of a DMA at `address` (translation on, TTM = 00) may do. */
  outcomes(sid: number, address: bigint, write: boolean): Outcome[] {
    const out: Outcome[] = [];
    for (const c of this.contexts(sid)) {
      if (!c.ok) {
        out.push({ kind: "fault", reasons: c.reasons, fpd: c.fpd, qualified: c.qualified });
        continue;
      }
      if (address >= BigInt(inputLimit(this.u, c))) {
        out.push({ kind: "fault", reasons: [F.BeyondAw], fpd: c.fpd, qualified: true });
        continue;
      }
      const a = Number(address);
      if (c.tt === 2) {
        out.push(inInterruptRange(a) ? { kind: "fault", reasons: [F.Interrupt], fpd: c.fpd, qualified: true } : { kind: "map", out: a });
        continue;
      }
      for (const p of this.pages(c, a)) {
        const faults = pageFaults(p, write);
        if (faults) out.push({ kind: "fault", reasons: faults, fpd: c.fpd, qualified: true });
        else {
          const o = (p as Page & { ok: true }).outBase + (a - (p as Page & { ok: true }).inBase);
          out.push(inInterruptRange(o) ? { kind: "fault", reasons: [F.Interrupt], fpd: c.fpd, qualified: true } : { kind: "map", out: o });
        }
      }
    }
    return out;
  }

  /** The unit may have looked up the context of `sid` now (a request, even one with no address). */
  observeContext(sid: number): void {
    if (!this.te || this.ttm !== 0) return;
    for (const c of walkContext(this.mem, this.u, this.rootTable, sid)) {
      if (!c.ok && !this.u.cm) continue;
      let m = this.ctxValid.get(sid);
      if (!m) this.ctxValid.set(sid, (m = new Map()));
      m.set(c.key, c);
    }
  }

  /** The unit may have walked `address` for `sid` now: what it saw becomes valid to cache. */
  observe(sid: number, address: bigint): void {
    this.observeContext(sid);
    for (const c of this.contexts(sid)) {
      if (!c.ok || c.tt === 2 || address >= BigInt(inputLimit(this.u, c))) continue;
      const a = Number(address);
      const p = walkPages(this.mem, this.u, c.root, c.aw, a);
      if (!p.ok && !this.u.cm) continue;
      const region = p.ok ? `${p.level}:${p.inBase}` : `1:${a - (a % 4096)}`;
      let m = this.tlbValid.get(c.did);
      if (!m) this.tlbValid.set(c.did, (m = new Map()));
      let results = m.get(region);
      if (!results) m.set(region, (results = new Map()));
      results.set(p.key, p);
    }
  }
}
