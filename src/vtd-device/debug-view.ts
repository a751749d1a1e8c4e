/**
 * A read-only debug view of a unit, for dumps like Linux's intel-iommu debugfs files: the
 * registers, the translation structures the guest built (read from guest memory at RTADDR), the
 * invalidation queue (from IQA/IQH/IQT) and what the unit's caches hold. Plain objects; allocates
 * freely (it is never on a request path). Reading changes nothing the guest sees (register reads
 * are counted in `stats.registerReads`, and traced while someone listens).
 * Platform-neutral: no node: imports.
 */
import { DESCRIPTOR_SIZE, DescriptorType, DescriptorTypeHigh, DescriptorTypeLow } from "../spec/descriptors.ts";
import { ContextHi, ContextLo, Pte, RootLo, awLevels, levelPageShift } from "../spec/entries.ts";
import { getField } from "../spec/field.ts";
import { Iqa, Reg } from "../spec/registers.ts";
import type { ContextCache } from "./caches/context-cache.ts";
import type { Iotlb } from "./caches/iotlb.ts";
import type { GuestMemory } from "./memory/guest-memory.ts";
import type { RegisterSpec } from "./registers/register-table.ts";

/** What the view reads of a unit: its public register interface, register table and memory. */
export interface ViewedUnit {
  readonly table: readonly RegisterSpec[];
  readonly options: { readonly memory: GuestMemory };
  readRegister(offset: number, size: 1 | 2 | 4 | 8): bigint;
}

export interface RegisterValue {
  name: string;
  offset: number;
  width: 32 | 64;
  value: bigint;
}

/** Every register of the unit's table, in offset order. */
export function registerValues(unit: ViewedUnit): RegisterValue[] {
  return [...unit.table]
    .sort((a, b) => a.offset - b.offset)
    .map((spec) => ({ name: spec.name, offset: spec.offset, width: spec.width, value: unit.readRegister(spec.offset, spec.width === 64 ? 8 : 4) }));
}

/** A leaf mapping of a second-stage table: the IOVA page, the entries on its walk (top first), the output. */
export interface Mapping {
  iova: bigint;
  /** Leaf level: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
  level: number;
  output: bigint;
  read: boolean;
  write: boolean;
  /** Paging entries from the top level down to the leaf. */
  path: bigint[];
}

export interface ContextEntryView {
  bus: number;
  devfn: number;
  rootLo: bigint;
  rootHi: bigint;
  lo: bigint;
  hi: bigint;
  did: number;
  tableRoot: bigint;
  aw: number;
  translationType: number;
  fpd: boolean;
  /** Leaf mappings of its second-stage table, at most `mappingLimit`; `moreMappings` counts the rest. */
  mappings: Mapping[];
  moreMappings: number;
}

export interface TranslationStructures {
  rootTable: bigint;
  /** Present context entries under present root entries. */
  contexts: ContextEntryView[];
  /** Why nothing could be read (root table outside memory, ...), when so. */
  problem?: string;
}

function read64(memory: GuestMemory, address: bigint): bigint | undefined {
  const bytes = new Uint8Array(8);
  if (!memory.read(address, bytes)) return undefined;
  return new DataView(bytes.buffer).getBigUint64(0, true);
}

function readTable(memory: GuestMemory, address: bigint, bytes: number): DataView | undefined {
  const into = new Uint8Array(bytes);
  return memory.read(address, into) ? new DataView(into.buffer) : undefined;
}

const PAGE_MASK = ~0xfffn;
const ADDR_MASK = (1n << 52n) - 1n & PAGE_MASK;

/**
 * The root and context entries the guest built (legacy mode), and each present context's mappings
 * (pass-through contexts have none). Walks at most `mappingLimit` leaves per context.
 */
export function translationStructures(unit: ViewedUnit, mappingLimit = 64): TranslationStructures {
  const memory = unit.options.memory;
  const rootTable = unit.readRegister(Reg.RTADDR, 8) & PAGE_MASK;
  const contexts: ContextEntryView[] = [];
  const root = readTable(memory, rootTable, 4096);
  if (!root) return { rootTable, contexts, problem: `the root table at 0x${rootTable.toString(16)} is outside guest memory` };
  for (let bus = 0; bus < 256; bus++) {
    const rootLo = root.getBigUint64(bus * 16, true);
    const rootHi = root.getBigUint64(bus * 16 + 8, true);
    if (getField(rootLo, RootLo.P) === 0n) continue;
    const table = readTable(memory, rootLo & ADDR_MASK, 4096);
    if (!table) continue;
    for (let devfn = 0; devfn < 256; devfn++) {
      const lo = table.getBigUint64(devfn * 16, true);
      const hi = table.getBigUint64(devfn * 16 + 8, true);
      if (getField(lo, ContextLo.P) === 0n) continue;
      const aw = Number(getField(hi, ContextHi.AW));
      const translationType = Number(getField(lo, ContextLo.TT));
      const entry: ContextEntryView = {
        bus, devfn, rootLo, rootHi, lo, hi,
        did: Number(getField(hi, ContextHi.DID)),
        tableRoot: lo & ADDR_MASK,
        aw, translationType,
        fpd: getField(lo, ContextLo.FPD) === 1n,
        mappings: [],
        moreMappings: 0,
      };
      if (translationType !== 2) walkMappings(memory, entry, Math.min(awLevels(aw), 5), mappingLimit);
      contexts.push(entry);
    }
  }
  return { rootTable, contexts };
}

function walkMappings(memory: GuestMemory, entry: ContextEntryView, levels: number, limit: number): void {
  const visit = (table: bigint, level: number, base: bigint, path: bigint[]): void => {
    const view = readTable(memory, table, 4096);
    if (!view) return;
    for (let i = 0; i < 512; i++) {
      const pte = view.getBigUint64(i * 8, true);
      if ((pte & (Pte.R | Pte.W)) === 0n) continue;
      const iova = base + (BigInt(i) << BigInt(levelPageShift(level)));
      const here = [...path, pte];
      if (level === 1 || (level <= 3 && (pte & Pte.PS) !== 0n)) {
        if (entry.mappings.length >= limit) {
          entry.moreMappings++;
          continue;
        }
        const size = 1n << BigInt(levelPageShift(level));
        entry.mappings.push({ iova, level, output: pte & ADDR_MASK & ~(size - 1n), read: (pte & Pte.R) !== 0n, write: (pte & Pte.W) !== 0n, path: here });
      } else if (level > 1) {
        visit(pte & ADDR_MASK, level - 1, iova, here);
      }
    }
  };
  visit(entry.tableRoot, levels, 0n, []);
}

export interface QueueDescriptor {
  index: number;
  lo: bigint;
  hi: bigint;
  /** What it is, decoded (`iotlb page DID 1 ADDR 0x10000 AM 0`). */
  kind: string;
}

export interface QueueView {
  /** IQA's base, IQH and IQT as descriptor indexes, and the queue's size in descriptors. */
  base: bigint;
  head: number;
  tail: number;
  size: number;
  /** The last `count` descriptors before the head (the ones the unit fetched most recently), oldest first. */
  last: QueueDescriptor[];
}

/** Decodes a 128-bit descriptor in words (legacy descriptor types). */
export function describeDescriptor(lo: bigint, hi: bigint): string {
  const type = Number(getField(lo, DescriptorTypeLow) | (getField(lo, DescriptorTypeHigh) << 4n));
  const f = (shift: number, width: number) => Number((lo >> BigInt(shift)) & ((1n << BigInt(width)) - 1n));
  const sid = (s: number) => `${((s >> 8) & 0xff).toString(16).padStart(2, "0")}:${((s >> 3) & 0x1f).toString(16).padStart(2, "0")}.${s & 7}`;
  switch (type) {
    case DescriptorType.ContextCache: {
      const g = f(4, 2);
      return g === 1 ? "context-cache global" : g === 2 ? `context-cache domain DID ${f(16, 16)}` : g === 3 ? `context-cache device SID ${sid(f(32, 16))} FM ${f(48, 2)} DID ${f(16, 16)}` : "context-cache (G 0: invalid)";
    }
    case DescriptorType.Iotlb: {
      const g = f(4, 2);
      if (g === 1) return "iotlb global";
      if (g === 2) return `iotlb domain DID ${f(16, 16)}`;
      if (g === 3) return `iotlb page DID ${f(16, 16)} ADDR 0x${(hi & PAGE_MASK).toString(16)} AM ${Number(hi & 0x3fn)}${hi & 0x40n ? " IH" : ""}`;
      return "iotlb (G 0: invalid)";
    }
    case DescriptorType.DeviceTlb:
      return `device-iotlb SID ${sid(f(32, 16))} ADDR 0x${(hi & PAGE_MASK).toString(16)} S ${Number(hi & 1n)}`;
    case DescriptorType.InterruptEntryCache:
      return f(4, 1) === 0 ? "iec global" : `iec index ${f(32, 16)} IM ${f(27, 5)}`;
    case DescriptorType.InvalidationWait: {
      const flags = [f(4, 1) ? "IF" : "", f(5, 1) ? "SW" : "", f(6, 1) ? "FN" : ""].filter(Boolean).join(" ");
      return `wait${flags ? ` ${flags}` : ""}${f(5, 1) ? ` data 0x${f(32, 32).toString(16)} to 0x${(hi & ~3n).toString(16)}` : ""}`;
    }
    default:
      return lo === 0n && hi === 0n ? "(empty)" : `type ${type} (not a legacy descriptor)`;
  }
}

/** The invalidation queue as the registers describe it, and its last `count` descriptors. */
export function invalidationQueue(unit: ViewedUnit, count = 16): QueueView {
  const iqa = unit.readRegister(Reg.IQA, 8);
  const wide = getField(iqa, Iqa.DW) === 1n;
  const shift = wide ? 5 : 4;
  const base = iqa & PAGE_MASK;
  const size = (4096 << Number(getField(iqa, Iqa.QS))) >> shift;
  const head = Number(unit.readRegister(Reg.IQH, 8) & 0x7fff0n) >> shift;
  const tail = Number(unit.readRegister(Reg.IQT, 8) & 0x7fff0n) >> shift;
  const last: QueueDescriptor[] = [];
  const n = Math.min(count, size);
  for (let k = n; k >= 1; k--) {
    const index = (((head - k) % size) + size) % size;
    const at = base + BigInt(index * (DESCRIPTOR_SIZE << (shift - 4)));
    const lo = read64(unit.options.memory, at);
    const hi = read64(unit.options.memory, at + 8n);
    if (lo === undefined || hi === undefined) continue;
    last.push({ index, lo, hi, kind: describeDescriptor(lo, hi) });
  }
  return { base, head, tail, size, last };
}

export interface CachedContext {
  sid: number;
  /** False: a negative entry (CM = 1), `reason` the fault it gives. */
  present: boolean;
  reason: number;
  did: number;
  tableRoot: bigint;
  aw: number;
  translationType: number;
  fpd: boolean;
}

export interface CachedTranslation {
  did: number;
  /** 1: 4 KiB, 2: 2 MiB, 3: 1 GiB. */
  level: number;
  iova: bigint;
  output: bigint;
  read: boolean;
  write: boolean;
  /** 0 for a translation; the fault reason of a negative entry. */
  reason: number;
}

export interface CacheContents {
  contexts: CachedContext[];
  iotlb: CachedTranslation[];
}

/** What a context cache and an IOTLB hold, sorted by requester and by domain and IOVA. */
export function readCacheContents(cc: ContextCache, tlb: Iotlb): CacheContents {
  const contexts: CachedContext[] = [];
  cc.forEachEntry((sid, i) => {
    const reason = cc.reason[i]!;
    contexts.push({
      sid, present: reason === 0, reason, did: cc.did[i]!, tableRoot: BigInt(cc.tableRoot[i]!), aw: cc.aw[i]!,
      translationType: cc.translationType[i]!, fpd: cc.faultProcessingDisable[i]! !== 0,
    });
  });
  contexts.sort((a, b) => a.sid - b.sid);
  const iotlb: CachedTranslation[] = [];
  tlb.forEachEntry((did, level, page, output, permission, reason) => {
    iotlb.push({ did, level, iova: BigInt(page) << BigInt(levelPageShift(level)), output: BigInt(output), read: (permission & 1) !== 0, write: (permission & 2) !== 0, reason });
  });
  iotlb.sort((a, b) => a.did - b.did || (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  return { contexts, iotlb };
}

/** What the unit's context cache and IOTLB hold (`unit.cacheContents()`); undefined for anything that is not a unit. */
export function cacheContents(unit: unknown): CacheContents | undefined {
  const u = unit as { cacheContents?: unknown } | null;
  return u && typeof u.cacheContents === "function" ? (u.cacheContents as () => CacheContents)() : undefined;
}
