/**
 * The reference walk of the fuzz oracle, written from the VT-d specification (rev 5.10) alone:
 * legacy-mode root entry (§9.1), context entry (§9.3) and second-stage paging entries (§9.8),
 * with the fault conditions of §7.1.3 (Table 26). Nothing here comes from the unit's code.
 *
 * Where the spec leaves a choice (which of two faults is reported when both apply, whether a
 * pass-through entry must carry the largest AW), the walk returns every acceptable answer.
 */
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT } from "../../src/spec/index.ts";

/** What the oracle knows of the unit: CAP/ECAP as read from it, the platform's HAW, RAM size. */
export interface Shape {
  /** Host address width (the platform's DMAR reports MGAW + 1). */
  haw: number;
  /** Maximum guest address width in bits (CAP.MGAW + 1). */
  mgaw: number;
  sagaw: number;
  sllps: number;
  cm: boolean;
  pt: boolean;
  dt: boolean;
  sc: boolean;
  mamv: number;
  psi: boolean;
  ram: number;
}

/** Fault reasons (Table 26). */
export const F = {
  RootNotPresent: 0x1, CtxNotPresent: 0x2, CtxInvalid: 0x3, BeyondAw: 0x4, Write: 0x5, Read: 0x6,
  PagingRead: 0x7, RootRead: 0x8, CtxRead: 0x9, RootRsvd: 0xa, CtxRsvd: 0xb, PagingRsvd: 0xc, Interrupt: 0xe,
} as const;

const TWO32 = 2 ** 32;

export class Mem {
  readonly view: DataView;
  /** 4 KiB pages written since the copy was last made equal to the background (see run.ts). */
  readonly dirty = new Set<number>();
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  /** Writes `data` at `address` (inside RAM). */
  set(data: Uint8Array, address: number): void {
    this.bytes.set(data, address);
    for (let page = Math.floor(address / 4096); page * 4096 < address + data.length; page++) this.dirty.add(page);
  }
  setU32(address: number, value: number): void {
    this.view.setUint32(address, value, true);
    this.dirty.add(Math.floor(address / 4096));
    this.dirty.add(Math.floor((address + 3) / 4096));
  }
  /** [address, address + length) lies in RAM. */
  has(address: number, length: number): boolean {
    return address >= 0 && address + length <= this.bytes.length;
  }
  u32(address: number): number {
    return this.view.getUint32(address, true);
  }
}

/** A context result: usable (`ok`) or a fault. `tag` is the DID a cache would file it under. */
export type Ctx =
  | { ok: true; tt: number; aw: number; root: number; did: number; fpd: boolean; tag: number; key: string }
  | { ok: false; reasons: number[]; fpd: boolean; qualified: boolean; readError: boolean; tag: number; key: string };

/** A second-stage result, independent of the access type (a cache holds it for any access). */
export type Page =
  | { ok: true; level: number; inBase: number; outBase: number; perm: number; key: string }
  | { ok: false; notPresent: boolean; reasons: number[]; perm: number; key: string };

function hiMaskAbove(haw: number): number {
  // Bits haw..63 of a qword, as a mask of its upper dword.
  return haw >= 64 ? 0 : ~((2 ** (haw - 32) - 1) | 0) >>> 0;
}

function ctxFault(reasons: number[], fpd: boolean, qualified: boolean, readError = false): Ctx {
  reasons = [...new Set(reasons)].sort((a, b) => a - b);
  return { ok: false, reasons, fpd, qualified, readError, tag: 0, key: `F${reasons.join(",")}:${fpd ? 1 : 0}` };
}

/** Every acceptable context result for requester `sid` (legacy mode, root table at `rootTable`). */
export function walkContext(mem: Mem, u: Shape, rootTable: number, sid: number): Ctx[] {
  const rootEntry = rootTable + (sid >> 8) * 16;
  if (!mem.has(rootEntry, 16)) return [ctxFault([F.RootRead], false, false, true)];
  const rlo = mem.u32(rootEntry), rhi = mem.u32(rootEntry + 4);
  if ((rlo & 1) === 0) return [ctxFault([F.RootNotPresent], false, false)];
  const hawMask = hiMaskAbove(u.haw);
  if ((rlo & 0xffe) !== 0 || (rhi & hawMask) !== 0 || mem.u32(rootEntry + 8) !== 0 || mem.u32(rootEntry + 12) !== 0) {
    return [ctxFault([F.RootRsvd], false, false)];
  }
  const ctp = (rhi & ~hawMask) * TWO32 + ((rlo & 0xfffff000) >>> 0);
  const entry = ctp + (sid & 0xff) * 16;
  if (!mem.has(entry, 16)) return [ctxFault([F.CtxRead], false, false, true)];
  const clo = mem.u32(entry), chi = mem.u32(entry + 4), dlo = mem.u32(entry + 8), dhi = mem.u32(entry + 12);
  const fpd = (clo & 2) !== 0;
  if ((clo & 1) === 0) return [ctxFault([F.CtxNotPresent], fpd, true)];
  const tt = (clo >> 2) & 3, aw = dlo & 7, did = (dlo >>> 8) & 0xffff;
  const definite: number[] = [], maybe: number[] = [];
  if ((clo & 0xff0) !== 0 || (dlo & 0x80) !== 0 || (dlo & 0xff00_0000) !== 0 || dhi !== 0) definite.push(F.CtxRsvd);
  // SLPTPTR bits >= HAW are reserved; with TT = 2 the pointer is ignored, so either reading holds.
  if ((chi & hawMask) !== 0) (tt === 2 ? maybe : definite).push(F.CtxRsvd);
  const awSupported = ((u.sagaw >> aw) & 1) === 1;
  // AW must be a SAGAW value for every present entry, pass-through included (LCT.4.x).
  if (!awSupported) definite.push(F.CtxInvalid);
  if (tt === 1 && !u.dt) definite.push(F.CtxInvalid);
  if (tt === 2 && !u.pt) definite.push(F.CtxInvalid);
  if (tt === 3) definite.push(F.CtxInvalid, F.CtxRsvd);
  // Pass-through: software must program the largest supported AW; hardware may or may not check.
  if (tt === 2 && awSupported && aw !== 31 - Math.clz32(u.sagaw)) maybe.push(F.CtxInvalid);
  if (definite.length > 0) return [ctxFault([...definite, ...maybe], fpd, true)];
  const root = (chi & ~hawMask) * TWO32 + ((clo & 0xfffff000) >>> 0);
  const ok: Ctx = { ok: true, tt, aw, root: tt === 2 ? 0 : root, did, fpd, tag: did, key: `C${tt}:${aw}:${tt === 2 ? 0 : root}:${did}:${fpd ? 1 : 0}` };
  return maybe.length > 0 ? [ok, ctxFault(maybe, fpd, true)] : [ok];
}

/** First input address a context does not translate (0x4 at and above it). */
export function inputLimit(u: Shape, c: Ctx & { ok: true }): number {
  return 2 ** (c.tt === 2 ? u.haw : Math.min(u.mgaw, 30 + 9 * c.aw));
}

function pageFault(notPresent: boolean, reasons: number[], perm: number): Page {
  return { ok: false, notPresent, reasons, perm, key: `P${notPresent ? "np" : reasons.join(",")}:${perm}` };
}

/** The second-stage walk of input `address` (below the context's limit) from table `root`. */
export function walkPages(mem: Mem, u: Shape, root: number, aw: number, address: number): Page {
  const levels = aw + 2;
  const hawMask = hiMaskAbove(u.haw);
  // Bits 51:HAW of an entry, as a mask of its upper dword.
  const rsvdHigh = (0xfffff & hawMask) >>> 0;
  let table = root, perm = 3;
  for (let level = levels; level >= 1; level--) {
    const shift = 12 + 9 * (level - 1);
    const index = Math.floor(address / 2 ** shift) % 512;
    const entry = table + index * 8;
    if (!mem.has(entry, 8)) return pageFault(false, level === levels ? [F.PagingRead, F.CtxInvalid] : [F.PagingRead], perm);
    const lo = mem.u32(entry), hi = mem.u32(entry + 4);
    const p = lo & 3;
    if (p === 0) return pageFault(true, [], 0);
    perm &= p;
    const leaf = level === 1 || (level <= 3 && (lo & 0x80) !== 0);
    let reserved = (hi & rsvdHigh) !== 0 || (hi & 0x4000_0000) !== 0; // 51:HAW, 62 (IW/TM)
    if (!leaf) {
      if ((lo & 0x800) !== 0) reserved = true;
      if (level >= 4 && (lo & 0x80) !== 0) reserved = true;
    } else {
      if (!u.sc && (lo & 0x800) !== 0) reserved = true;
      if (level === 2 && ((lo & 0x1f_f000) !== 0 || (u.sllps & 1) === 0)) reserved = true;
      if (level === 3 && ((lo & 0x3fff_f000) !== 0 || (u.sllps & 2) === 0)) reserved = true;
    }
    if (reserved) return pageFault(false, [F.PagingRsvd], perm);
    const next = (hi & ~hawMask & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
    if (leaf) {
      const size = 2 ** shift;
      const inBase = address - (address % size);
      return { ok: true, level, inBase, outBase: next, perm, key: `M${level}:${inBase}:${next}:${perm}` };
    }
    table = next;
  }
  throw new Error("unreachable");
}

/** Acceptable fault reasons of a page result for an access, or undefined if it permits it. */
export function pageFaults(p: Page, write: boolean): number[] | undefined {
  const need = write ? 2 : 1, denied = write ? F.Write : F.Read;
  if (p.ok) return (p.perm & need) !== 0 ? undefined : [denied];
  if (p.notPresent) return [denied];
  return (p.perm & need) !== 0 ? p.reasons : [...p.reasons, denied];
}

export function inInterruptRange(output: number): boolean {
  return output >= INTERRUPT_RANGE_BASE && output <= INTERRUPT_RANGE_LIMIT;
}

/** A run of mappings: [iova, end) to output from `out`, with permission `perm`. */
export interface Run {
  iova: number;
  end: number;
  out: number;
  perm: number;
}

/**
 * Every leaf mapping of second-stage tables inside [start, end), as the spec reads them: present
 * leaves with a permission left after the AND down the walk; a reserved bit or a table outside
 * RAM maps nothing. Undefined when more than `limit` leaves or tables are met (aliased tables).
 */
export function enumerate(mem: Mem, u: Shape, root: number, aw: number, start: number, end: number, limit: number): Run[] | undefined {
  const out: Run[] = [];
  let budget = limit;
  const levels = aw + 2;
  const hawMask = hiMaskAbove(u.haw);
  const rsvdHigh = (0xfffff & hawMask) >>> 0;
  const visit = (table: number, level: number, base: number, perm: number): boolean => {
    if (--budget < 0) return false;
    const size = 2 ** (12 + 9 * (level - 1));
    const first = Math.max(0, Math.floor((start - base) / size)), last = Math.min(511, Math.floor((end - 1 - base) / size));
    for (let i = first; i <= last; i++) {
      const entry = table + i * 8;
      if (!mem.has(entry, 8)) return true;
      const lo = mem.u32(entry), hi = mem.u32(entry + 4);
      const p = perm & lo & 3;
      if ((lo & 3) === 0 || p === 0) continue;
      const leaf = level === 1 || (level <= 3 && (lo & 0x80) !== 0);
      let reserved = (hi & rsvdHigh) !== 0 || (hi & 0x4000_0000) !== 0;
      if (!leaf) reserved ||= (lo & 0x800) !== 0 || (level >= 4 && (lo & 0x80) !== 0);
      else {
        if (!u.sc && (lo & 0x800) !== 0) reserved = true;
        if (level === 2 && ((lo & 0x1f_f000) !== 0 || (u.sllps & 1) === 0)) reserved = true;
        if (level === 3 && ((lo & 0x3fff_f000) !== 0 || (u.sllps & 2) === 0)) reserved = true;
      }
      if (reserved) continue;
      const next = (hi & ~hawMask & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      const iova = base + i * size;
      if (leaf) {
        if (--budget < 0) return false;
        out.push({ iova, end: iova + size, out: next, perm: p });
      } else if (!visit(next, level - 1, iova, p)) return false;
    }
    return true;
  };
  if (!visit(root, levels, 0, 3)) return undefined;
  return out;
}

/** Leaves minus the interrupt range's outputs (never memory, so never a mapping). */
export function withoutInterruptRange(runs: Run[]): Run[] {
  const lo = INTERRUPT_RANGE_BASE, hi = INTERRUPT_RANGE_LIMIT + 1;
  const out: Run[] = [];
  for (const r of runs) {
    const outEnd = r.out + (r.end - r.iova);
    if (outEnd <= lo || r.out >= hi) {
      out.push(r);
      continue;
    }
    if (r.out < lo) out.push({ iova: r.iova, end: r.iova + (lo - r.out), out: r.out, perm: r.perm });
    if (outEnd > hi) out.push({ iova: r.iova + (hi - r.out), end: r.end, out: hi, perm: r.perm });
  }
  return out;
}

/** Sorted, clipped to [start, end), adjacent runs with contiguous outputs merged. */
export function normalise(runs: Run[], start: number, end: number): Run[] {
  const sorted = runs
    .map((r) => {
      const s = Math.max(r.iova, start), e = Math.min(r.end, end);
      return { iova: s, end: e, out: r.out + (s - r.iova), perm: r.perm };
    })
    .filter((r) => r.iova < r.end)
    .sort((a, b) => a.iova - b.iova);
  const out: Run[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.end === r.iova && last.out + (last.end - last.iova) === r.out && last.perm === r.perm) last.end = r.end;
    else out.push({ ...r });
  }
  return out;
}
