/**
 * Translation of one request in scalable mode (VT-d 5.10 §3.4.3, §3.6-§3.8): the PASID-table
 * entry the walk finds decides the stage. Second-stage translation is legacy mode's page walk
 * (translation/walk.ts) with the scalable-mode fault reasons; pass-through keeps the address;
 * first-stage is first-stage-walk.ts. The PASID cache and the scalable IOTLB (scalable-caches.ts)
 * sit in front: successful walks are cached, and a hit serves only an access the cached
 * permissions allow (anything else walks, so first-stage faults and A/D updates always come from
 * the tables). Under caching mode a faulting PASID-structure or second-stage walk is cached too
 * (caches/caching-policy.ts, cachesScalableFault) and answers until software invalidates it.
 * Counted as the legacy path counts: a PASID-cache miss is a context miss, a page walk an IOTLB
 * miss (DeviceStats, per requester in UnitCounters), and each request by the PGTT that served it.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { LEVEL_SIZE, awWidth } from "../../spec/entries.ts";
import { NO_PASID, PasidGranularTranslationType, TranslationTableMode } from "../../spec/scalable.ts";
import { ScalableStructure, cachesScalableFault } from "../caches/caching-policy.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { Invalidation, InvalidationListener } from "../invalidation/cache-invalidation.ts";
import type { InvalidationQueue } from "../invalidation/invalidation-queue.ts";
import type { RegisterInvalidation } from "../invalidation/register-invalidation.ts";
import type { ResolvedOptions } from "../options.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { bump, type DeviceStats, type UnitCounters } from "../stats.ts";
import { PageWalk, accessFault, walkPages } from "../translation/walk.ts";
import { FirstStageWalk } from "./first-stage-walk.ts";
import { setOutput, type TranslationResult } from "../translation/translation-output.ts";
import { ScalableWalk, walkPasidEntry, type ScalableWalkConfig } from "./scalable-walk.ts";
import { DIRTY_SET, MAY_READ, MAY_USER, MAY_WRITE, ScalableCaches } from "./scalable-caches.ts";

export class ScalableTranslation {
  /** SRTP latched RTADDR.TTM = 01 (scalable mode) on this unit, which offers it (ECAP.SMTS). */
  active = false;
  /** The request being served: its PASID (NO_PASID: none) and whether it asks for supervisor privilege. */
  requestPasid = NO_PASID;
  requestPrivileged = false;
  /** The PASID cache and the scalable IOTLB (scalable-caches.ts). */
  readonly caches: ScalableCaches;
  /** Faulting PASID-structure and second-stage walks are cached (caching mode). */
  private readonly negativeCaching: boolean;

  /** What the walk to a PASID-table entry needs of the unit (also the notifiers' pure walks). */
  readonly walkCfg: ScalableWalkConfig;
  private readonly walk = new ScalableWalk();
  private readonly cached = new ScalableWalk();
  private readonly pageWalk = new PageWalk();
  private readonly firstStage = new FirstStageWalk();

  constructor(
    private readonly memory: MemoryAccess,
    options: ResolvedOptions,
    private readonly cfg: WalkConfig,
    private readonly stats: DeviceStats,
    private readonly counters: UnitCounters,
  ) {
    this.caches = new ScalableCaches(counters);
    this.negativeCaching = options.negativeCaching;
    this.walkCfg = {
      awBits: cfg.awBits, sagaw: cfg.sagaw, firstStage: options.firstStage, secondStage: options.secondStage,
      passThrough: options.passThrough, deviceIotlb: options.deviceIotlb, supervisorRequests: options.secondStage,
    };
  }

  /**
   * Wires scalable mode into the unit's rooms: its caches on the one invalidation path in front of
   * the notifiers, the PASID descriptors' executor, register-based invalidation (refused in scalable mode).
   */
  install(invalidation: Invalidation, notifiers: InvalidationListener, queue: InvalidationQueue, registers: RegisterInvalidation): void {
    invalidation.listener = this.caches.before(notifiers);
    if (queue.wideExecutor) queue.wideExecutor.caches = this.caches;
    registers.scalable = this;
  }

  /**
   * After a snapshot was restored: the snapshot holds the latched root and whether it was a legacy
   * table, not the latched TTM, so scalable mode is taken as latched when the legacy one was not and
   * RTADDR holds TTM = 01. The caches start empty (a unit may cache less).
   */
  restored(rtaddrLow: number, legacyLatched: boolean): void {
    this.active = !legacyLatched && ((rtaddrLow >>> 10) & 3) === TranslationTableMode.Scalable;
    this.caches.pasidCache.invalidateAll();
    this.caches.iotlb.invalidateAll();
  }

  /** ECAP.SRS: the unit takes supervisor requests. */
  get supervisorRequests(): boolean {
    return this.walkCfg.supervisorRequests;
  }

  /** GCMD.SRTP latched RTADDR with this TTM (VT-d §11.4.4). */
  latch(ttm: number): void {
    this.active = ttm === TranslationTableMode.Scalable;
  }

  /** A request with a PASID (pasid-requests.ts), counted among the unit's translations as one without is by the translator. */
  translateRequestWithPasid(into: TranslationResult, rootTable: number, sid: number, address: number, write: boolean): number {
    this.stats.translations++;
    return this.translate(into, rootTable, sid, address, write);
  }

  /**
   * Translates `address` of a request from `sid` (the PASID and privilege in `requestPasid` /
   * `requestPrivileged`) through the tables under `rootTable`. Returns 0 with the output in `into`,
   * or the fault reason with `into.resultFpd` set.
   */
  translate(into: TranslationResult, rootTable: number, sid: number, address: number, write: boolean): number {
    const caches = this.caches;
    const stats = this.stats;
    const slot = caches.pasidCache.lookup(sid, this.requestPasid);
    let walk: ScalableWalk;
    if (slot >= 0) {
      stats.contextHits++;
      walk = caches.pasidCache.load(slot, this.cached);
      into.resultFpd = walk.faultProcessingDisable;
      if (walk.reason !== 0) return walk.reason; // a negative entry (caching mode)
    } else {
      stats.contextMisses++;
      bump(this.counters.contextMissesBySid, sid);
      walk = walkPasidEntry(this.memory, rootTable, sid, this.requestPasid, this.walkCfg, this.walk);
      into.resultFpd = walk.faultProcessingDisable;
      if (walk.reason !== 0) {
        if (cachesScalableFault(this.negativeCaching, ScalableStructure.PasidEntry, walk.reason)) caches.pasidCache.fillNegative(sid, this.requestPasid, walk);
        return walk.reason;
      }
      caches.pasidCache.fill(sid, this.requestPasid, walk);
      this.counters.pasidEntryWalksByPgtt[walk.pgtt]!++;
    }
    const privileged = this.requestPasid === NO_PASID ? walk.ridPrivileged || this.requestPrivileged : this.requestPrivileged;
    const pgtt = walk.pgtt;
    this.counters.translationsByPgtt[pgtt]!++;
    if (pgtt === PasidGranularTranslationType.PassThrough) {
      if (address >= 2 ** this.cfg.awBits) return FaultReason.SmAddressBeyondMgaw;
      return output(into, address, 4096 - (address % 4096));
    }
    const firstStage = pgtt === PasidGranularTranslationType.FirstStage;
    if (firstStage && privileged && !walk.supervisorRequests) return FaultReason.PasidEntrySupervisorDisabled;
    const inPage = address % 4096;
    const page = (address - inPage) / 4096;
    const tlb = caches.iotlb;
    if (tlb.lookup(walk.did, walk.pasid, page)) {
      // A negative entry (caching mode, second stage only) answers with the fault it recorded.
      if (tlb.hitNegative !== 0) {
        stats.iotlbHits++;
        return write ? tlb.hitNegative >>> 8 : tlb.hitNegative & 0xff;
      }
      if (permits(tlb.hitPermission, firstStage, write, privileged, walk.writeProtect)) {
        stats.iotlbHits++;
        return output(into, tlb.hitOutput + inPage, 4096 - inPage);
      }
    }
    stats.iotlbMisses++;
    bump(this.counters.iotlbMissesBySid, sid);
    let level: number, pageOutput: number, permission: number;
    if (!firstStage) {
      // Second stage (the walk admitted no other type).
      if (address >= 2 ** Math.min(this.cfg.awBits, awWidth(walk.aw))) return FaultReason.SmAddressBeyondMgaw;
      const pages = walkPages(this.memory, walk.secondStageRoot, walk.aw, address, this.cfg, this.pageWalk);
      if (pages.structural !== 0) {
        // Not present, reserved or unreadable: what a read and a write get from this walk.
        const readReason = secondStageReason(accessFault(pages, false));
        const writeReason = secondStageReason(accessFault(pages, true));
        if (cachesScalableFault(this.negativeCaching, ScalableStructure.SecondStage, readReason) && cachesScalableFault(this.negativeCaching, ScalableStructure.SecondStage, writeReason)) {
          tlb.fillNegative(walk.did, walk.pasid, page, readReason, writeReason);
        }
        return write ? writeReason : readReason;
      }
      const denied = accessFault(pages, write);
      if (denied !== 0) return secondStageReason(denied);
      level = pages.level;
      pageOutput = pages.pageOutput;
      permission = pages.permission & (MAY_READ | MAY_WRITE);
    } else {
      const fs = this.firstStage;
      const reason = fs.walk(this.memory, walk.firstStageRoot, this.cfg.awBits, address, write, !privileged, walk.writeProtect, walk.executeDisable, true);
      if (reason !== 0) return reason; // never cached: first-stage faults follow CM = 0 (cachesScalableFault)
      level = fs.level;
      pageOutput = fs.pageOutput;
      permission = MAY_READ | (fs.writable ? MAY_WRITE : 0) | (fs.userAllowed ? MAY_USER : 0) | (write ? DIRTY_SET : 0);
    }
    const size = LEVEL_SIZE[level]!;
    const offset = address % size;
    tlb.fill(walk.did, walk.pasid, page, pageOutput + offset - inPage, permission);
    return output(into, pageOutput + offset, size - offset);
  }
}

/** A cached translation serves the request without a walk (else the walk decides, and sets A/D as needed). */
function permits(permission: number, firstStage: boolean, write: boolean, privileged: boolean, writeProtect: boolean): boolean {
  if (!firstStage) return (permission & (write ? MAY_WRITE : MAY_READ)) !== 0;
  if (!privileged && (permission & MAY_USER) === 0) return false;
  if (!write) return true;
  const writable = (permission & MAY_WRITE) !== 0 || (privileged && !writeProtect);
  return writable && (permission & DIRTY_SET) !== 0;
}

/** The scalable-mode reason for what legacy mode's second-stage walk found (VT-d §7.1.3: SSS.x, SGN.x). */
function secondStageReason(legacy: number): number {
  switch (legacy) {
    case FaultReason.WriteNotPermitted: return FaultReason.SmWriteNotPermitted;
    case FaultReason.ReadNotPermitted: return FaultReason.SmReadNotPermitted;
    case FaultReason.PagingEntryReadError: return FaultReason.SecondStageReadError;
    case FaultReason.PagingEntryReserved: return FaultReason.SecondStageReserved;
    // The table SSPTPTR names could not be read.
    default: return FaultReason.SecondStageTablePointerInvalid;
  }
}

/** The interrupt range is never memory (VT-d §3.14): 0x87 in scalable mode. */
function output(into: TranslationResult, address: number, limit: number): number {
  return setOutput(into, address, limit, FaultReason.SmInterruptAddress);
}
