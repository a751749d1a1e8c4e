/**
 * What the unit may keep in its caches (VT-d §6.1, §6.2): every translation a walk found and every
 * valid IRTE, and, with caching mode (CAP.CM = 1, option `negativeCaching`), not-present and
 * faulting results too.
 * A context or table read that failed (outside memory) is never cached: the spec's negative
 * entries are about what the tables said, not about a bus error.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { TranslationType } from "../../spec/entries.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import type { ContextWalk } from "../translation/walk.ts";
import type { ContextCache } from "./context-cache.ts";
import type { Iotlb } from "./iotlb.ts";

export class CachingPolicy {
  constructor(
    private readonly contextCache: ContextCache,
    private readonly iotlb: Iotlb,
    private readonly cfg: WalkConfig,
    /** Cache not-present and faulting results (caching mode). */
    readonly negativeCaching: boolean,
  ) {}

  /**
   * Caches the outcome of a context walk for `sid` when it may be cached; returns its slot, or -1
   * when the outcome must not be kept (a fault without negative caching, or a read error).
   */
  cacheContext(sid: number, walk: ContextWalk): number {
    const readError = walk.reason === FaultReason.RootTableReadError || walk.reason === FaultReason.ContextTableReadError;
    if (walk.reason !== 0 && (!this.negativeCaching || readError)) return -1;
    const cc = this.contextCache;
    const slot = cc.fill(sid);
    // A negative entry is tagged with domain 0 (VT-d §6.1, caching mode).
    cc.did[slot] = walk.reason === 0 ? walk.did : 0;
    cc.tableRoot[slot] = walk.tableRoot;
    cc.aw[slot] = walk.aw;
    cc.inputLimit[slot] = contextInputLimit(walk, this.cfg.awBits);
    cc.translationType[slot] = walk.translationType;
    cc.faultProcessingDisable[slot] = walk.faultProcessingDisable ? 1 : 0;
    cc.reason[slot] = walk.reason;
    cc.fastInputLimit[slot] = walk.reason === 0 && walk.translationType === TranslationType.Untranslated ? cc.inputLimit[slot]! : 0;
    return slot;
  }

  /** Caches a leaf translation. */
  cacheTranslation(did: number, level: number, address: number, pageOutput: number, permission: number): void {
    this.iotlb.insert(did, level, address, pageOutput, permission, 0);
  }

  /**
   * An IRTE just read for an interrupt request (the interrupt entry cache follows CAP.CM as the
   * other remapping caches do, VT-d §6.1): a present entry with nothing reserved set is always
   * kept; a not-present or erroneous one only with caching mode, so the guest must then issue an
   * interrupt-entry-cache invalidation after making it present. A failed read is never kept.
   */
  mayCacheInterruptEntry(valid: boolean): boolean {
    return valid || this.negativeCaching;
  }

  /**
   * Caches a faulting page walk as a negative 4 KiB entry when caching mode allows; returns false
   * when it must not be kept. The guest must invalidate after fixing the entry (VT-d §6.1).
   */
  cacheFault(did: number, address: number, permission: number, reason: number): boolean {
    // A table that could not be read (LSS.1, or the top table: LCT.4 from the walk) is a bus error, not table content.
    if (!this.negativeCaching || reason === FaultReason.PagingEntryReadError || reason === FaultReason.ContextEntryInvalid) return false;
    this.iotlb.insert(did, 1, address, 0, permission, reason);
    return true;
  }
}

/** The scalable-mode structures a faulting walk went through (VT-d 5.10 §6.1, §6.2.2-§6.2.4). */
export enum ScalableStructure {
  /** Scalable-mode root, context, PASID-directory and PASID-table entries (the PASID cache). */
  PasidEntry,
  /** Second-stage paging entries (PGTT 010). */
  SecondStage,
  /** First-stage paging entries (PGTT 001). */
  FirstStage,
}

/** Reasons that are a bus error reading a table, not what a table said: never kept, CM or not. */
const SCALABLE_READ_ERRORS: ReadonlySet<number> = new Set([
  FaultReason.SmRootTableReadError, FaultReason.SmContextTableReadError, FaultReason.PasidDirectoryReadError,
  FaultReason.PasidTableReadError, FaultReason.SecondStageReadError, FaultReason.SecondStageTablePointerInvalid,
  FaultReason.FirstStageReadError,
]);

/**
 * May a faulting scalable-mode walk be kept as a negative entry? Only with caching mode, and per
 * stage (VT-d §6.1): CM governs the PASID structures and second-stage entries, which software must
 * then invalidate after making them present (PASID-cache invalidation, IOTLB invalidation); a
 * first-stage walk follows the rules of CM = 0 (software need not invalidate after a not-present
 * first-stage entry becomes present), so its faults are never kept.
 */
export function cachesScalableFault(negativeCaching: boolean, structure: ScalableStructure, reason: number): boolean {
  return negativeCaching && structure !== ScalableStructure.FirstStage && !SCALABLE_READ_ERRORS.has(reason);
}

/**
 * First input address beyond what a context entry translates: 2^HAW for pass-through, else
 * 2^min(MGAW, AGAW) (VT-d §3.6). The strict checker applies the same rule.
 */
export function contextInputLimit(walk: ContextWalk, awBits: number): number {
  return 2 ** (walk.translationType === TranslationType.PassThrough ? awBits : Math.min(awBits, 30 + 9 * walk.aw));
}
