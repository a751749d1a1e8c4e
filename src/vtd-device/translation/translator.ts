/**
 * Translation of one DMA request (VT-d §3.4-§3.6, §6): the context cache and the IOTLB in front
 * of the walks, the endpoint's device-TLB for TT = 1, and the final checks of the output. What may
 * be cached is the caching policy's call. Results go to fields (no allocation per request).
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT, LEVEL_SIZE, TranslationType } from "../../spec/entries.ts";
import type { CachingPolicy } from "../caches/caching-policy.ts";
import type { ContextCache } from "../caches/context-cache.ts";
import type { DeviceTlbs } from "../caches/device-tlb.ts";
import type { Iotlb } from "../caches/iotlb.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { bump, type DeviceStats, type UnitCounters } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { Section } from "../state/codec.ts";
import { PERMISSION_READ, PERMISSION_WRITE } from "./paging-entry.ts";
import { setOutput } from "./translation-output.ts";
import { ContextWalk, NOT_PRESENT, PageWalk, walkContext, walkPages } from "./walk.ts";
import type { ScalableTranslation } from "../scalable/scalable-translation.ts";

/** The translator's latched state as a snapshot holds it. */
export interface TranslatorState {
  rootTable: number;
  enabled: boolean;
  rootTableModeValid: boolean;
}

export class Translator {
  /** Latched by GCMD.SRTP. */
  rootTable = 0;
  /** GSTS.TES. */
  enabled = false;
  /** RTADDR.TTM latched by SRTP was 00 (legacy mode); otherwise every request faults (0x30). */
  rootTableModeValid = true;
  /** Scalable mode (option `scalableMode`): walks requests while SRTP latched TTM = 01. */
  scalable: ScalableTranslation | undefined = undefined;

  /** Output of the last successful translation, and the bytes usable from there. */
  resultOutput = 0;
  resultLimit = 0;
  /** FPD of the context entry of the last request (its fault is then not recorded when qualified). */
  resultFpd = false;

  /** Snapshot (state/): what SRTP and TE latched. */
  save(): TranslatorState {
    return { rootTable: this.rootTable, enabled: this.enabled, rootTableModeValid: this.rootTableModeValid };
  }

  decode(s: Section): TranslatorState {
    const rootTable = s.int("rootTable", 0, 2 ** this.cfg.awBits - 4096);
    if (rootTable % 4096 !== 0) s.fail(`rootTable: 0x${rootTable.toString(16)} is not 4 KiB aligned`);
    return { rootTable, enabled: s.bool("enabled"), rootTableModeValid: s.bool("rootTableModeValid") };
  }

  load(state: TranslatorState): void {
    this.rootTable = state.rootTable;
    this.enabled = state.enabled;
    this.rootTableModeValid = state.rootTableModeValid;
  }

  private readonly contextWalk = new ContextWalk();
  private readonly pageWalk = new PageWalk();

  constructor(
    private readonly memory: MemoryAccess,
    private readonly cfg: WalkConfig,
    private readonly contextCache: ContextCache,
    private readonly iotlb: Iotlb,
    private readonly deviceTlbs: DeviceTlbs,
    private readonly policy: CachingPolicy,
    private readonly stats: DeviceStats,
    private readonly trace: Tracer,
    private readonly counters: UnitCounters,
  ) {}

  /**
   * Translates one request address. Returns 0 and sets resultOutput / resultLimit, or returns the
   * fault reason with resultFpd set.
   */
  translate(sid: number, address: number, write: boolean): number {
    const stats = this.stats;
    stats.translations++;
    this.resultFpd = false;
    // Fast path, small enough to inline: context and IOTLB both hit and permit the access. Hot
    // constants are literals checked against the spec's (a module constant is a load in V8).
    const cc = this.contextCache;
    const slot = this.enabled ? cc.lookup(sid) : -1;
    if (slot >= 0 && address < cc.fastInputLimit[slot]!) {
      const tlb = this.iotlb;
      const did = cc.did[slot]!;
      // hitAccess is reason * 4 + permission: a translation (reason 0) whose permission has the
      // access's bit (1 read, 2 write; the other bit does not matter).
      const need = write ? (2 satisfies typeof PERMISSION_WRITE) : (1 satisfies typeof PERMISSION_READ);
      // 4 KiB leaves only (superpage hits take the slow path's full lookup): a fast path this
      // small is inlined into the unit's DMA loop, so the address is not boxed for a call.
      if (tlb.lookup4K(did, address) && (tlb.hitAccess & ~(need ^ 3)) === need) {
        stats.contextHits++;
        stats.iotlbHits++;
        const offset = address - tlb.hitInputBase;
        const output = tlb.hitOutput + offset, limit = tlb.hitSize - offset;
        // Clear of the interrupt range (the negation of the test in `output`, which clips or faults).
        if (output > (0xfeef_ffff satisfies typeof INTERRUPT_RANGE_LIMIT) || output + limit <= (0xfee0_0000 satisfies typeof INTERRUPT_RANGE_BASE)) {
          this.resultOutput = output;
          this.resultLimit = limit;
          return 0;
        }
        // LGN.4 is qualified: the context entry's FPD applies here as on the slow path.
        this.resultFpd = cc.faultProcessingDisable[slot] === 1;
        return this.output(output, limit);
      }
    }
    return this.translateSlow(sid, address, write);
  }

  /** Every other case: translation off, misses, walks, faults, pass-through, device-TLBs. */
  private translateSlow(sid: number, address: number, write: boolean): number {
    if (!this.enabled) {
      this.resultOutput = address;
      this.resultLimit = Number.MAX_SAFE_INTEGER;
      return 0;
    }
    if (!this.rootTableModeValid) return this.scalable?.active ? this.scalable.translate(this, this.rootTable, sid, address, write) : FaultReason.InvalidRootTableMode;
    // Context: cache, else walk (and cache what the policy allows).
    const cc = this.contextCache;
    let slot = cc.lookup(sid);
    if (slot >= 0) {
      this.stats.contextHits++;
    } else {
      this.stats.contextMisses++;
      bump(this.counters.contextMissesBySid, sid);
      if (this.trace.active) this.trace.emit({ type: "vtd_context_miss", sid });
      const walk = walkContext(this.memory, this.rootTable, sid, this.cfg, this.contextWalk);
      slot = this.policy.cacheContext(sid, walk);
      if (slot < 0) {
        this.resultFpd = walk.faultProcessingDisable;
        return walk.reason;
      }
    }
    this.resultFpd = cc.faultProcessingDisable[slot] === 1;
    const contextReason = cc.reason[slot]!;
    if (contextReason !== 0) return contextReason;

    if (address >= cc.inputLimit[slot]!) return FaultReason.AddressBeyondMgaw;
    const translationType = cc.translationType[slot]!;
    if (translationType === TranslationType.PassThrough) return this.output(address, 4096 - (address % 4096));
    const ats = translationType === TranslationType.DeviceTlb;
    if (ats) {
      // The endpoint uses its own device-TLB first; only a miss reaches the unit (ATS translation request).
      const cached = this.deviceTlbs.lookup(sid, address);
      if (cached && accessFaultOf(cached.permission, write) === 0) {
        return this.output(cached.pageOutput + (address % 4096), 4096 - (address % 4096));
      }
    }
    const did = cc.did[slot]!;
    const tlb = this.iotlb;
    let permission: number, reason: number, level: number, pageOutput: number;
    if (tlb.lookup(did, address)) {
      this.stats.iotlbHits++;
      permission = tlb.hitPermission;
      reason = tlb.hitReason;
      level = tlb.hitLevel;
      pageOutput = tlb.hitOutput;
    } else {
      this.stats.iotlbMisses++;
      bump(this.counters.iotlbMissesBySid, sid);
      if (this.trace.active) this.trace.emit({ type: "vtd_iotlb_miss", sid, address: BigInt(address) });
      const walk = walkPages(this.memory, cc.tableRoot[slot]!, cc.aw[slot]!, address, this.cfg, this.pageWalk);
      permission = walk.permission;
      level = walk.level;
      pageOutput = walk.pageOutput;
      reason = walk.structural === NOT_PRESENT ? 0 : walk.structural;
      if (walk.structural === 0) {
        this.policy.cacheTranslation(did, level, address, pageOutput, permission);
      } else if (this.policy.cacheFault(did, address, permission, reason)) {
        level = 1;
      } else {
        return accessFaultOf(permission, write) || reason;
      }
    }
    const denied = accessFaultOf(permission, write);
    if (denied !== 0) return denied;
    if (reason !== 0) return reason;
    const size = LEVEL_SIZE[level]!;
    const offset = address % size;
    if (ats) {
      const page = address - (address % 4096);
      this.deviceTlbs.fill(sid, page, pageOutput + (page - (address - offset)), permission);
    }
    return this.output(pageOutput + offset, size - offset);
  }

  /** Final check of a translated address: the interrupt range is never memory (VT-d §3.14). */
  private output(address: number, limit: number): number {
    return setOutput(this, address, limit, FaultReason.InterruptAddress);
  }
}

function accessFaultOf(permission: number, write: boolean): number {
  if (write) return permission & PERMISSION_WRITE ? 0 : FaultReason.WriteNotPermitted;
  return permission & PERMISSION_READ ? 0 : FaultReason.ReadNotPermitted;
}
