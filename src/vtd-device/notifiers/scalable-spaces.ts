/**
 * Address spaces in scalable mode (VT-d 5.10 §3.4.3): what a space translates with is the
 * PASID-table entry its requests reach (requests without PASID: the context entry's RID_PASID),
 * read by the unit's own pure walk (scalable/scalable-walk.ts: no fault recorded, no cache used).
 * - PGTT = second stage: the space is Translated with SSPTPTR and AW, mirrored by MAP/UNMAP as in
 *   legacy mode, tagged by the entry's DID and PASID for IOTLB and PASID-based IOTLB invalidations;
 * - PGTT = pass-through: Identity;
 * - PGTT = first stage: FirstStage: nothing is mirrored; a nested notifier is told the table
 *   (hwptAlloc, nested-types.ts) and the invalidations of it (hwptInvalidate);
 * - anything else (not present, reserved bits, a walk fault): None.
 * What the nested notifier was told is kept (`space.attached`) so a re-read that finds the same
 * entry tells nothing, and one that finds another tells hwptAlloc or hwptDetach once.
 */
import { PasidGranularTranslationType } from "../../spec/scalable.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { ScalableWalk, walkPasidEntry, type ScalableWalkConfig } from "../scalable/scalable-walk.ts";
import { IommuAddressSpace, SpaceMode } from "./address-space.ts";
import {
  IOMMU_VTD_INV_ALL_PAGES, IOMMU_VTD_S1_SRE, IOMMU_VTD_S1_WPE, type HwptInvalidateEvent, type IommuHwptVtdS1, type NestedSpaceId,
} from "./nested-types.ts";

/** What scalable mode's notifiers need of the unit: the latched root table and whether TTM = 01 is latched. */
export interface ScalableRootSource {
  readonly rootTable: number;
}
export interface ScalableModeSource {
  readonly active: boolean;
  readonly walkCfg: ScalableWalkConfig;
}

/** Counters of the nested model (NotifierStats holds them). */
export interface NestedCounters {
  hwptAllocEvents: number;
  hwptDetachEvents: number;
  hwptInvalidateEvents: number;
  notifierErrors: number;
}

/** 4-level first-stage paging: 48-bit input addresses. */
const FIRST_STAGE_WIDTH = 48;

export class ScalableSpaces {
  private readonly walk = new ScalableWalk();

  constructor(
    private readonly memory: MemoryAccess,
    private readonly root: ScalableRootSource,
    private readonly mode: ScalableModeSource,
    private readonly counters: NestedCounters,
  ) {}

  /** SRTP latched TTM = 01 (the unit walks scalable-mode tables). */
  get active(): boolean {
    return this.mode.active;
  }

  /** The space's PASID entry as the unit would load it now; TE is on (the caller handles TE off). */
  read(space: IommuAddressSpace, awBits: number): void {
    const walk = walkPasidEntry(this.memory, this.root.rootTable, space.sid, space.pasid, this.mode.walkCfg, this.walk);
    space.did = 0;
    space.tableRoot = 0;
    space.levels = 0;
    space.inputLimit = 0;
    space.entryPasid = -1;
    space.firstStage = undefined;
    space.interruptRangeBlocked = true;
    space.mode = SpaceMode.None;
    if (walk.reason !== 0) return;
    space.did = walk.did;
    space.entryPasid = walk.pasid;
    switch (walk.pgtt) {
      case PasidGranularTranslationType.SecondStage:
        space.mode = SpaceMode.Translated;
        space.tableRoot = walk.secondStageRoot;
        space.levels = walk.aw + 2;
        space.inputLimit = 2 ** Math.min(awBits, 30 + 9 * walk.aw);
        return;
      case PasidGranularTranslationType.PassThrough:
        space.mode = SpaceMode.Identity;
        space.inputLimit = 2 ** awBits;
        return;
      case PasidGranularTranslationType.FirstStage: {
        space.mode = SpaceMode.FirstStage;
        // IOMMU_VTD_S1_EAFE stays 0: the unit offers no extended accessed flag (ECAP.EAFS = 0).
        const flags = (walk.supervisorRequests ? IOMMU_VTD_S1_SRE : 0) | (walk.writeProtect ? IOMMU_VTD_S1_WPE : 0);
        space.firstStage = { flags, pgtblAddr: walk.firstStageRoot, addrWidth: FIRST_STAGE_WIDTH, executeDisable: walk.executeDisable };
        return;
      }
      default:
        space.mode = SpaceMode.None;
    }
  }

  /** True when the space's PASID entry, read now, is usable and of a DID and PASID `matches` takes. */
  peek(space: IommuAddressSpace, matches: (did: number, pasid: number) => boolean): boolean {
    const walk = walkPasidEntry(this.memory, this.root.rootTable, space.sid, space.pasid, this.mode.walkCfg, this.walk);
    return walk.reason === 0 && matches(walk.did, walk.pasid);
  }

  /** Tells the space's nested notifier (if any) what changed since it was last told: hwptAlloc, hwptDetach or nothing. */
  rebind(space: IommuAddressSpace): void {
    const nested = space.nested;
    if (nested === undefined) return;
    const now = space.firstStage, told = space.attached;
    if (now !== undefined && (told === undefined || !sameHwpt(now, told))) {
      space.attached = now;
      this.counters.hwptAllocEvents++;
      this.call(() => nested.hwptAlloc({ ...ids(space), data: now }));
    } else if (now === undefined && told !== undefined) {
      space.attached = undefined;
      this.counters.hwptDetachEvents++;
      this.call(() => nested.hwptDetach(ids(space)));
    }
  }

  /** IOMMU_HWPT_INVALIDATE to the space's nested notifier, if a table is attached. */
  invalidate(space: IommuAddressSpace, cache: HwptInvalidateEvent["cache"], addr: number, npages: number, flags: number): void {
    const nested = space.nested;
    if (nested === undefined || space.attached === undefined) return;
    this.counters.hwptInvalidateEvents++;
    const event: HwptInvalidateEvent = { ...ids(space), cache, data: { addr, npages, flags } };
    this.call(() => nested.hwptInvalidate(event));
  }

  /** A device-TLB invalidation of [start, end) sent to endpoint `sid`: not tagged by PASID, so every first-stage space of it is told. */
  deviceTlb(spaces: readonly IommuAddressSpace[], sid: number, start: number, end: number): void {
    const pages = Math.min((end - start) / 4096, IOMMU_VTD_INV_ALL_PAGES);
    for (const space of spaces) if (space.sid === sid && space.mode === SpaceMode.FirstStage) this.invalidate(space, "device-tlb", start, pages, 0);
  }

  private call(tell: () => void): void {
    try {
      tell();
    } catch {
      // The host's notifier must not break the unit: counted, and the unit goes on.
      this.counters.notifierErrors++;
    }
  }
}

function sameHwpt(a: IommuHwptVtdS1, b: IommuHwptVtdS1): boolean {
  return a.pgtblAddr === b.pgtblAddr && a.flags === b.flags && a.addrWidth === b.addrWidth && a.executeDisable === b.executeDisable;
}

function ids(space: IommuAddressSpace): NestedSpaceId {
  return { sid: space.sid, pasid: space.pasid, entryPasid: space.entryPasid, did: space.did };
}
