/**
 * Legacy-mode translation walks (VT-d §3.4, §9.1, §9.3, §9.8) as functions of memory, the root
 * table and the request: no caches here. The device puts caches around them, and tests and the
 * strict checker use them as the reference walk. Results go into caller-owned objects so a walk
 * allocates nothing.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { TranslationType } from "../../spec/entries.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { LEVEL_SIZE } from "../../spec/entries.ts";
import { TWO_POW_32 } from "../../spec/numbers.ts";
import { PERMISSION_READ, PERMISSION_WRITE, upperAddressMask } from "./paging-entry.ts";

export { LEVEL_SIZE, PERMISSION_READ, PERMISSION_WRITE };

export class ContextWalk {
  /** 0 when the context is usable, else the fault reason. */
  reason = 0;
  faultProcessingDisable = false;
  did = 0;
  tableRoot = 0;
  aw = 0;
  translationType = 0;
}

/** Root entry → context entry for `sid` (VT-d §3.4.2). */
export function walkContext(mem: MemoryAccess, rootTable: number, sid: number, cfg: WalkConfig, out: ContextWalk): ContextWalk {
  out.reason = 0;
  out.faultProcessingDisable = false;
  out.did = 0;
  const bus = sid >>> 8;
  const devfn = sid & 0xff;
  const rootAt = rootTable + bus * 16;
  const r0 = mem.read32(rootAt), r1 = mem.read32(rootAt + 4), r2 = mem.read32(rootAt + 8), r3 = mem.read32(rootAt + 12);
  if (r0 < 0 || r1 < 0 || r2 < 0 || r3 < 0) return fail(out, FaultReason.RootTableReadError);
  if ((r0 & 1) === 0) return fail(out, FaultReason.RootEntryNotPresent);
  const hiMask = upperAddressMask(cfg.awBits);
  if ((r0 & 0xffe) !== 0 || (r1 & ~hiMask) !== 0 || r2 !== 0 || r3 !== 0) return fail(out, FaultReason.RootEntryReserved);
  const contextTable = (r1 & hiMask) * TWO_POW_32 + ((r0 & 0xffff_f000) >>> 0);

  const at = contextTable + devfn * 16;
  const c0 = mem.read32(at), c1 = mem.read32(at + 4), c2 = mem.read32(at + 8), c3 = mem.read32(at + 12);
  if (c0 < 0 || c1 < 0 || c2 < 0 || c3 < 0) return fail(out, FaultReason.ContextTableReadError);
  // FPD is evaluated even when P = 0 (VT-d §9.3).
  out.faultProcessingDisable = (c0 & 2) !== 0;
  if ((c0 & 1) === 0) return fail(out, FaultReason.ContextEntryNotPresent);
  if ((c0 & 0xff0) !== 0 || (c1 & ~hiMask) !== 0 || (c2 & 0xff00_0080) !== 0 || c3 !== 0) {
    return fail(out, FaultReason.ContextEntryReserved);
  }
  const tt = (c0 >>> 2) & 3;
  const aw = c2 & 7;
  out.translationType = tt;
  out.aw = aw;
  out.did = (c2 >>> 8) & 0xffff;
  out.tableRoot = (c1 & hiMask) * TWO_POW_32 + ((c0 & 0xffff_f000) >>> 0);
  if (
    tt === TranslationType.Reserved ||
    (tt === TranslationType.DeviceTlb && !cfg.deviceIotlb) ||
    (tt === TranslationType.PassThrough && !cfg.passThrough)
  ) {
    return fail(out, FaultReason.ContextEntryInvalid);
  }
  // LCT.4: the AW check applies to every present context entry, pass-through included (VT-d §9.3).
  if (((cfg.sagaw >>> aw) & 1) === 0) return fail(out, FaultReason.ContextEntryInvalid);
  return out;
}

function fail(out: ContextWalk, reason: FaultReason): ContextWalk {
  out.reason = reason;
  return out;
}

/**
 * Result of a second-stage walk, independent of the access type so it can be cached whole:
 * `structural` is 0 (a leaf was reached), or why the walk stopped: NOT_PRESENT, or a reserved-bit /
 * table-read fault. The access check (`accessFault`) then reproduces the spec order: at each level
 * the permission check comes before the reserved-bit check.
 */
export class PageWalk {
  structural = 0;
  /** Level where the walk stopped (the leaf level on success). */
  level = 0;
  /** Permissions accumulated down to the stop point. */
  permission = 0;
  /** Level at which read / write permission was first lost (0 = never). */
  readLostAt = 0;
  writeLostAt = 0;
  /** Output address of the leaf page. */
  pageOutput = 0;
}

/** A walk that found an entry with R = W = 0. */
export const NOT_PRESENT = 0xff;

export function walkPages(mem: MemoryAccess, tableRoot: number, aw: number, address: number, cfg: WalkConfig, out: PageWalk): PageWalk {
  out.structural = 0;
  out.permission = PERMISSION_READ | PERMISSION_WRITE;
  out.readLostAt = 0;
  out.writeLostAt = 0;
  out.pageOutput = 0;
  const masks = cfg.entryMasks;
  let table = tableRoot;
  for (let level = aw + 2; level >= 1; level--) {
    out.level = level;
    const size = LEVEL_SIZE[level]!;
    const index = Math.floor(address / size) % 512;
    const lo = mem.read32(table + index * 8);
    const hi = mem.read32(table + index * 8 + 4);
    if (lo < 0 || hi < 0) {
      // The table SLPTPTR names is part of the context entry's validity (LCT.4); deeper tables are LSS.1.
      out.structural = level === aw + 2 ? FaultReason.ContextEntryInvalid : FaultReason.PagingEntryReadError;
      return out;
    }
    const entryPermission = lo & 3;
    const before = out.permission;
    out.permission = before & entryPermission;
    if ((before & PERMISSION_READ) && !(out.permission & PERMISSION_READ)) out.readLostAt = level;
    if ((before & PERMISSION_WRITE) && !(out.permission & PERMISSION_WRITE)) out.writeLostAt = level;
    if (entryPermission === 0) {
      out.structural = NOT_PRESENT;
      return out;
    }
    const leaf = masks.isLeaf(level, lo);
    if (masks.isReserved(level, leaf, lo, hi)) {
      out.structural = FaultReason.PagingEntryReserved;
      return out;
    }
    const next = masks.address(lo, hi);
    if (leaf) {
      out.pageOutput = next - (next % size);
      return out;
    }
    table = next;
  }
  return out;
}

/**
 * The fault an access of the given kind gets from a walk result, or 0 (VT-d §7.1.3 order:
 * permission before reserved bits at each level; a table read error stops the walk at its level).
 */
export function accessFault(walk: PageWalk, write: boolean): number {
  const lostAt = write ? walk.writeLostAt : walk.readLostAt;
  const denied = write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted;
  switch (walk.structural) {
    case 0:
      return lostAt !== 0 ? denied : 0;
    case NOT_PRESENT:
      return denied;
    case FaultReason.PagingEntryReadError:
    case FaultReason.ContextEntryInvalid:
      return lostAt > walk.level ? denied : walk.structural;
    default:
      return lostAt >= walk.level && lostAt !== 0 ? denied : walk.structural;
  }
}
