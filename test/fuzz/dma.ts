/**
 * Judging one DMA request against the oracle. The request is cut at 4 KiB input pages; each
 * piece may move through one of the outputs the oracle allows (a fresh walk, or a result valid
 * since its last covering invalidation), fault with one of the reasons it allows, or abort when
 * its output is not RAM. What the unit did is read back from RAM (writes carry random data) and
 * from the read buffer (pre-filled with other random data), then matched against those choices:
 * pieces move in order and stop at the first fault or abort. Fault records are checked too.
 */
import { FRCD_OFFSET } from "../../src/spec/index.ts";
import type { Oracle, Outcome, Problem } from "./oracle.ts";
import type { Mem } from "./walk.ts";

const TWO64 = 1n << 64n;
const PAGE = 4096n;

export interface FaultRegs {
  frcd: { lo: bigint; hi: bigint }[];
  fsts: number;
}

export function readFaultRegs(read: (off: number, size: 4 | 8) => bigint, records: number): FaultRegs {
  const frcd = [];
  for (let i = 0; i < records; i++) frcd.push({ lo: read(FRCD_OFFSET + 16 * i, 8), hi: read(FRCD_OFFSET + 16 * i + 8, 8) });
  return { frcd, fsts: Number(read(0x34, 4)) };
}

export interface DmaRequest {
  sid: number;
  iova: number | bigint;
  write: boolean;
  /** The data written, or the read buffer as the unit left it. */
  bytes: Uint8Array;
  /** The read buffer's content before the call. */
  fill: Uint8Array;
  ok: boolean;
  reason: number;
}

/** Exact address of a request, or undefined when it names none (NaN, negative, beyond 2^64, fractional). */
export function exactAddress(iova: number | bigint): bigint | undefined {
  if (typeof iova === "bigint") return iova >= 0n && iova < TWO64 ? iova : undefined;
  return Number.isInteger(iova) && iova >= 0 && iova < 2 ** 64 ? BigInt(iova) : undefined;
}

function equal(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, length: number): boolean {
  if (length > 64) return Buffer.compare(a.subarray(aOff, aOff + length), b.subarray(bOff, bOff + length)) === 0;
  for (let i = 0; i < length; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

interface Piece {
  address: bigint;
  offset: number;
  length: number;
  outcomes: Outcome[];
  /** Moved (through an allowed output) is consistent with what was seen; so is not moved. */
  moved: boolean;
  notMoved: boolean;
  faults: Outcome[];
  abort: boolean;
  movable: boolean;
}

function describe(o: Outcome): string {
  if (o.kind === "map") return `map→0x${o.out.toString(16)}`;
  const reasons = o.reasons.includes(-1) ? "of any reason (TTM blocks)" : o.reasons.map((r) => "0x" + r.toString(16)).join("|");
  return `fault ${reasons}${o.qualified && o.fpd ? " (FPD)" : ""}`;
}

/**
 * Judges a DMA already done by the unit. `ram` is RAM now; `mem` the oracle's copy from before,
 * brought up to date here with every piece that moved. `sid` must be a requester id (0..0xFFFF).
 */
export function judgeDma(o: Oracle, mem: Mem, ram: Uint8Array, r: DmaRequest, before: FaultRegs, after: FaultRegs): Problem[] {
  const problems: Problem[] = [];
  const start = exactAddress(r.iova);
  const ramSize = ram.length;
  const newRecords = after.frcd.map((f, i) => ((f.hi >> 63n) === 1n && (f.hi !== before.frcd[i]!.hi || f.lo !== before.frcd[i]!.lo) ? i : -1)).filter((i) => i >= 0);
  const pfoSet = (after.fsts & 1) === 1 && (before.fsts & 1) === 0;
  if (start === undefined) {
    o.observeContext(r.sid); // the unit may have looked the context up before refusing the address
    const nothingMoved = r.write ? Buffer.compare(ram, mem.bytes) === 0 : equal(r.bytes, 0, r.fill, 0, r.bytes.length);
    // No address: nothing may move and the request must fail; any fault record is acceptable.
    if (r.ok && r.bytes.length > 0) problems.push({ check: "dma", message: `a request at ${String(r.iova)} (not an address) succeeded` });
    if (!nothingMoved) problems.push({ check: "dma-data", message: `a ${r.write ? "write" : "read"} at ${String(r.iova)} (not an address) moved data` });
    if (typeof r.iova === "number" && Number.isFinite(r.iova) && r.iova > 0 && problems.length > 0) {
      // A fractional address may also be taken as its integer part.
      const floor = judgeDma(o, mem, ram, { ...r, iova: Math.floor(r.iova) }, before, after);
      return floor.length === 0 ? [] : problems;
    }
    return problems;
  }
  const translated = o.te;
  const blocked = o.te && o.ttm !== 0;
  const pieces: Piece[] = [];
  let offset = 0;
  do {
    const address = start + BigInt(offset);
    const length = Math.min(r.bytes.length - offset, Number(PAGE - (address % PAGE)));
    pieces.push({ address, offset, length, outcomes: [], moved: false, notMoved: false, faults: [], abort: false, movable: false });
    offset += length;
  } while (offset < r.bytes.length);

  // Writes into the oracle's copy, undoable (see the aliasing case below).
  const undo: { at: number; bytes: Uint8Array }[] = [];
  const apply = (data: Uint8Array, at: number) => {
    undo.push({ at, bytes: mem.bytes.slice(at, at + data.length) });
    mem.set(data, at);
  };
  const rollback = () => {
    for (let u = undo.pop(); u; u = undo.pop()) mem.set(u.bytes, u.at);
  };
  let reached = true;
  for (const p of pieces) {
    if (p.address >= TWO64) {
      p.outcomes = [{ kind: "fault", reasons: [-1], fpd: false, qualified: false }];
      p.abort = true;
    } else if (!translated) p.outcomes = [{ kind: "map", out: Number(p.address) }];
    else if (blocked) p.outcomes = [{ kind: "fault", reasons: [-1], fpd: true, qualified: true }, { kind: "fault", reasons: [-1], fpd: false, qualified: true }];
    else {
      p.outcomes = o.outcomes(r.sid, p.address, r.write);
      if (reached) o.observe(r.sid, p.address);
    }
    for (const x of p.outcomes) {
      if (x.kind === "fault") p.faults.push(x);
      else if (x.out + p.length <= ramSize && x.out >= 0) p.movable = true;
      else p.abort = true;
    }
    // What happened to this piece.
    let definite = -1, coincident = false;
    for (const x of p.outcomes) {
      if (x.kind !== "map" || x.out + p.length > ramSize) continue;
      if (!equal(ram, x.out, r.bytes, p.offset, p.length)) continue;
      if (r.write && equal(mem.bytes, x.out, r.bytes, p.offset, p.length)) coincident = true;
      else if (definite < 0) definite = x.out;
    }
    if (p.length === 0) {
      // A zero-length request moves nothing whatever it does.
      p.moved = p.notMoved = true;
    } else if (r.write) {
      p.moved = definite >= 0 || coincident;
      p.notMoved = definite < 0;
      if (definite >= 0) apply(r.bytes.subarray(p.offset, p.offset + p.length), definite);
    } else {
      p.moved = definite >= 0;
      p.notMoved = equal(r.bytes, p.offset, r.fill, p.offset, p.length);
      if (!p.moved && !p.notMoved) {
        problems.push({
          check: "dma-data",
          message: `read of sid 0x${r.sid.toString(16)} at 0x${p.address.toString(16)} returned bytes found at none of the permitted outputs [${p.outcomes.map(describe).join(", ")}]`,
        });
        return problems;
      }
    }
    if (!p.moved) reached = false;
  }

  // Pieces move in order and stop at the first fault or abort.
  const n = pieces.length;
  const prefixMoved = (k: number) => pieces.slice(0, k).every((p) => p.moved);
  const suffixStill = (k: number) => pieces.slice(k).every((p) => p.notMoved);
  const consistent: number[] = [];
  let explained = false;
  if (r.ok) explained = pieces.every((p) => p.moved);
  else if (r.reason !== 0) {
    for (let j = 0; j < n; j++) {
      if (prefixMoved(j) && suffixStill(j) && pieces[j]!.faults.some((f) => f.kind === "fault" && (f.reasons.includes(r.reason) || f.reasons.includes(-1)))) consistent.push(j);
    }
    explained = consistent.length > 0;
  } else {
    for (let j = 0; j < n && !explained; j++) {
      if (!pieces[j]!.abort) continue;
      for (let k0 = j; k0 >= 0; k0--) {
        if (prefixMoved(k0) && suffixStill(k0)) explained = true;
        if (k0 > 0 && !pieces[k0 - 1]!.movable) break;
      }
    }
  }
  if (r.write && outputsOverlap(pieces)) {
    // Pieces may have overwritten each other (aliased mappings, tables mapped onto themselves):
    // RAM no longer shows which piece moved. Replay the request as the unit would have done it,
    // each piece moving through its first permitted output, so that what the unit may have
    // walked (and cached) on the way is known; then every permitted output takes what RAM
    // holds, and nothing else may change.
    rollback();
    const outputs: [number, number][] = [];
    for (const p of pieces) {
      for (const x of p.outcomes) if (x.kind === "map") outputs.push([x.out, p.length]);
      if (p.address >= TWO64 || !translated || blocked) break;
      const again = o.outcomes(r.sid, p.address, r.write);
      o.observe(r.sid, p.address);
      const first = again.find((x) => x.kind === "map" && x.out + p.length <= ramSize);
      for (const x of again) if (x.kind === "map") outputs.push([x.out, p.length]);
      if (!first || first.kind !== "map") break;
      apply(r.bytes.subarray(p.offset, p.offset + p.length), first.out);
    }
    rollback();
    for (const [out, length] of outputs) if (out >= 0 && out + length <= ramSize) mem.set(ram.subarray(out, out + length), out);
    if (!explained) return problems;
  }
  if (!explained) {
    const what = r.ok ? "succeeded" : r.reason === 0 ? "aborted" : `faulted 0x${r.reason.toString(16)}`;
    const detail = pieces.map((p, k) => `#${k} 0x${p.address.toString(16)}+${p.length}: ${p.moved ? (p.notMoved ? "moved?" : "moved") : "not moved"}; may [${p.outcomes.map(describe).join(", ")}]`);
    problems.push({ check: "dma", message: `${r.write ? "write" : "read"} sid 0x${r.sid.toString(16)} iova 0x${start.toString(16)} len ${r.bytes.length} ${what}, not allowed: ${detail.join("; ")}` });
    return problems;
  }

  // Fault recording (VT-d §7.2): one record per unsuppressed fault, exact values, none otherwise.
  if (r.ok || r.reason === 0) {
    if (newRecords.length > 0 || pfoSet) problems.push({ check: "fault-record", message: `a request that ${r.ok ? "succeeded" : "aborted"} left a fault record or PFO` });
    return problems;
  }
  const matching = consistent.flatMap((j) => pieces[j]!.faults.filter((f) => f.kind === "fault" && (f.reasons.includes(r.reason) || f.reasons.includes(-1))));
  const suppressed = matching.map((f) => f.kind === "fault" && f.qualified && f.fpd);
  const allSuppressed = suppressed.every((s) => s), noneSuppressed = suppressed.every((s) => !s);
  if (newRecords.length > 1) problems.push({ check: "fault-record", message: `one faulting request made ${newRecords.length} fault records` });
  else if (allSuppressed && (newRecords.length > 0 || pfoSet)) {
    problems.push({ check: "fault-record", message: `fault 0x${r.reason.toString(16)} of sid 0x${r.sid.toString(16)} at 0x${start.toString(16)} was recorded although FPD = 1 suppresses it (qualified fault)` });
  } else if (noneSuppressed && newRecords.length === 0 && (after.fsts & 1) === 0 && !before.frcd.some((f) => f.hi >> 63n === 1n && Number(f.hi & 0xffffn) === r.sid)) {
    // (A record still pending for the same source-id lets hardware drop the fault, VT-d §7.2.1.)
    problems.push({ check: "fault-record", message: `fault 0x${r.reason.toString(16)} of sid 0x${r.sid.toString(16)} at 0x${start.toString(16)} was neither recorded nor counted as an overflow (PFO = 0)` });
  } else if (newRecords.length === 1 && !blocked && consistent.every((j) => pieces[j]!.address < TWO64)) {
    const f = after.frcd[newRecords[0]!]!;
    const pagesOk = consistent.map((j) => pieces[j]!.address & ~0xfffn);
    const fi = f.lo & ~0xfffn;
    const wrong: string[] = [];
    if (!pagesOk.includes(fi)) wrong.push(`FI 0x${fi.toString(16)} (expected 0x${pagesOk.map((a) => a.toString(16)).join(" or 0x")})`);
    if ((f.lo & 0xfffn) !== 0n) wrong.push(`bits 11:0 = 0x${(f.lo & 0xfffn).toString(16)}`);
    if (Number((f.hi >> 32n) & 0xffn) !== r.reason) wrong.push(`FR 0x${((f.hi >> 32n) & 0xffn).toString(16)} (expected 0x${r.reason.toString(16)})`);
    if (Number(f.hi & 0xffffn) !== r.sid) wrong.push(`SID 0x${(f.hi & 0xffffn).toString(16)}`);
    if (((f.hi >> 62n) & 1n) !== (r.write ? 0n : 1n) || ((f.hi >> 28n) & 1n) !== 0n) wrong.push(`T1:T2 = ${(f.hi >> 62n) & 1n}${(f.hi >> 28n) & 1n} for a ${r.write ? "write" : "read"}`);
    if (((f.hi >> 60n) & 3n) !== 0n || ((f.hi >> 31n) & 1n) !== 0n) wrong.push("AT or PP set for an untranslated request without PASID");
    if (wrong.length > 0) problems.push({ check: "fault-record", message: `fault record of ${r.write ? "write" : "read"} sid 0x${r.sid.toString(16)} iova 0x${start.toString(16)}: ${wrong.join(", ")}` });
  }
  return problems;
}

function outputsOverlap(pieces: Piece[]): boolean {
  const ranges: [number, number, number][] = [];
  pieces.forEach((p, k) => {
    for (const x of p.outcomes) if (x.kind === "map") ranges.push([x.out, x.out + p.length, k]);
  });
  for (const a of ranges) for (const b of ranges) if (a[2] !== b[2] && a[0] < b[1] && b[0] < a[1]) return true;
  return false;
}
