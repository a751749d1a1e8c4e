/**
 * What the strict checker reports: plain objects, one per driver bug, with the entries involved
 * and the invalidation (or cache-line flush) that would have covered it, in the spec's words.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { PERMISSION_READ, PERMISSION_WRITE } from "../translation/paging-entry.ts";

export type DriverBugKind =
  /** The unit is about to use a present cached entry (context cache, IOTLB, device-TLB, interrupt entry cache) that no longer matches the tables (VT-d §6.5). */
  | "stale-cache"
  /** CM = 1: the unit is about to use a cached not-present or faulting entry whose memory entry is now present (VT-d §6.1). */
  | "missing-cm-invalidation"
  /** ECAP.C = 0: a table entry on the request's walk holds another value in the CPU's cache than in memory (VT-d §11.4.3). */
  | "unflushed-table-write"
  /** CAP.RWBF = 1: a table entry on the request's walk was stored and the write buffer not flushed (GCMD.WBF) since (VT-d §6.8). */
  | "missing-write-buffer-flush";

/** A context entry as the unit decodes it (`fault` set: not present or invalid). */
export interface ContextView {
  structure: "context-entry";
  present: boolean;
  fault?: FaultReason;
  did: number;
  tableRoot: bigint;
  aw: number;
  translationType: number;
  fpd: boolean;
}

/** The translation of the request's 4 KiB page: the leaf (found at `level`) or why there is none. */
export interface TranslationView {
  structure: "iotlb-entry" | "device-tlb-entry" | "paging-entries";
  /** False: not present, or a faulting (reserved, unreadable) entry. */
  present: boolean;
  fault?: FaultReason;
  /** Leaf level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB); where the walk stopped when not present. */
  level: number;
  /** Output address of the request's 4 KiB page (0 when nothing is accessible). */
  output: bigint;
  read: boolean;
  write: boolean;
}

/** Raw bytes of one table entry (16 for root, context and interrupt remapping entries, 8 for paging entries), little-endian. */
export interface RawEntryView {
  structure: "table-entry";
  /** Scalable mode adds the PASID-directory and PASID-table entries (a qword of the 512-bit entry). */
  table: "root" | "context" | "pasid-directory" | "pasid-table" | "paging" | "interrupt-remapping";
  address: bigint;
  /** Paging-entry level (4: PML4E ... 1: PTE). */
  level?: number;
  value: bigint;
}

/**
 * Scalable mode: what the walk to a PASID-table entry gives (root, context, PASID directory and
 * PASID-table entry together, as the PASID cache holds it); `fault` set: not present or invalid.
 */
export interface PasidEntryView {
  structure: "pasid-entry";
  present: boolean;
  fault?: FaultReason;
  /** The PASID used (the request's, or RID_PASID); -1 when the walk stopped before knowing it. */
  pasid: number;
  did: number;
  /** PGTT: 1 first stage, 2 second stage, 4 pass-through. */
  pgtt: number;
  /** SSPTPTR (second stage) or FSPTPTR (first stage); 0 for pass-through. */
  tableRoot: bigint;
  fpd: boolean;
}

export type EntryView = ContextView | TranslationView | RawEntryView | PasidEntryView;

/** The invalidation or flush that would have covered the bug, structured and as text. */
export type MissingAction =
  | { action: "context-cache-invalidation"; granularity: "device"; sid: number; did: number; text: string }
  | { action: "iotlb-invalidation"; granularity: "page"; did: number; address: bigint; am: number; text: string }
  | { action: "device-tlb-invalidation"; sid: number; address: bigint; size: false; text: string }
  | { action: "cache-line-flush"; line: bigint; text: string }
  | { action: "write-buffer-flush"; text: string }
  | { action: "interrupt-entry-cache-invalidation"; index: number; text: string }
  /** Scalable mode: a PASID-selective PASID-cache invalidation (VT-d §6.5.2.2). */
  | { action: "pasid-cache-invalidation"; granularity: "pasid"; did: number; pasid: number; text: string }
  /** Scalable mode, first stage: a page-selective-within-PASID PASID-based IOTLB invalidation (VT-d §6.5.2.4). */
  | { action: "pasid-iotlb-invalidation"; granularity: "page"; did: number; pasid: number; address: bigint; am: number; text: string };

export interface DriverBugReport {
  kind: DriverBugKind;
  /** Requester id (source-id) of the request, and as bus:dev.fn. */
  sid: number;
  device: string;
  iova: bigint;
  write: boolean;
  /** What the unit uses: its cache entry; for unflushed-table-write, the stale entry it reads from memory. */
  cached: EntryView;
  /** What the guest's tables hold: memory; for unflushed-table-write, the entry in the CPU's view. */
  current: EntryView;
  missing: MissingAction;
  /** The unit's clock (ms) when it was seen. */
  time: number;
  /** One line with all of the above. */
  message: string;
}

/** A translation of the request's page: `permission` 1 read, 2 write (the R/W bits of both stages' caches), `output` its page. */
export function translationView(structure: TranslationView["structure"], permission: number, output: number, level: number, fault = 0): TranslationView {
  return {
    structure,
    present: permission !== 0,
    ...(fault !== 0 ? { fault } : {}),
    level,
    output: BigInt(output),
    read: (permission & PERMISSION_READ) !== 0,
    write: (permission & PERMISSION_WRITE) !== 0,
  };
}

/** JSON.stringify replacer for deduplication keys: bigints as hex. */
export function bigintsAsHex(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString(16) : value;
}

export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** bus:device.function of a source-id, as lspci prints it. */
export function sourceIdText(sid: number): string {
  const bus = (sid >> 8) & 0xff, dev = (sid >> 3) & 0x1f, fn = sid & 7;
  return `${bus.toString(16).padStart(2, "0")}:${dev.toString(16).padStart(2, "0")}.${fn}`;
}

export function describeEntry(e: EntryView): string {
  switch (e.structure) {
    case "context-entry":
      return e.present
        ? `context entry DID ${e.did} SLPTPTR ${hex(e.tableRoot)} AW ${e.aw} TT ${e.translationType}${e.fpd ? " FPD" : ""}`
        : `context entry ${faultName(e.fault)}`;
    case "pasid-entry": {
      if (!e.present) return `PASID-table entry ${faultName(e.fault)}`;
      const stage = e.pgtt === 1 ? `first stage FSPTPTR ${hex(e.tableRoot)}` : e.pgtt === 2 ? `second stage SSPTPTR ${hex(e.tableRoot)}` : e.pgtt === 4 ? "pass-through" : `PGTT ${e.pgtt}`;
      return `PASID-table entry of PASID ${e.pasid}: DID ${e.did} ${stage}${e.fpd ? " FPD" : ""}`;
    }
    case "table-entry":
      return `${e.table === "paging" ? `level-${e.level} paging` : e.table === "interrupt-remapping" ? "interrupt remapping table" : e.table} entry at ${hex(e.address)} = ${hex(e.value)}`;
    default: {
      const where = e.structure === "iotlb-entry" ? "IOTLB entry" : e.structure === "device-tlb-entry" ? "device-TLB entry" : "tables";
      if (!e.present && !e.read && !e.write) return `${where}: ${e.fault ? faultName(e.fault) : `not present (level ${e.level})`}`;
      const access = `${e.read ? "r" : "-"}${e.write ? "w" : "-"}`;
      return `${where}: ${hex(e.output)} ${access} (level-${e.level} leaf)`;
    }
  }
}

function faultName(reason: FaultReason | undefined): string {
  return reason === undefined ? "not present" : `${FaultReason[reason] ?? "fault"} (${hex(reason)})`;
}

export function reportMessage(r: Omit<DriverBugReport, "message">): string {
  return `driver bug (${r.kind}): ${r.device} ${r.write ? "write" : "read"} at IOVA ${hex(r.iova)}: ` +
    `the unit uses ${describeEntry(r.cached)}, the tables hold ${describeEntry(r.current)}; missing: ${r.missing.text}`;
}
