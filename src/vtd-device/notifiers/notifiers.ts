/**
 * IOMMU notifiers (the VFIO path, see docs: QEMU's intel-iommu notifiers): per requester id an
 * address space on which an embedder registers MAP / UNMAP / DEVIOTLB_UNMAP notifiers, and the
 * registry that turns the unit's invalidations into events for them.
 *
 * - Page-selective IOTLB invalidation: the spaces of that domain walk only the range.
 * - Domain-selective or global IOTLB invalidation: the spaces walk the whole domain against the
 *   record of what was reported: unchanged mappings give no event, changed ones UNMAP then MAP,
 *   removed ones UNMAP once.
 * - Context-cache invalidation (global, domain, device), SRTP, TE on or off, reset: the spaces
 *   concerned unmap everything (one UNMAP of the whole address width) and replay (MAP of every
 *   mapping the tables hold now). With TE off, or a pass-through context, a space is reported as
 *   one identity MAP of the whole address width.
 * - Device-TLB invalidation: DEVIOTLB_UNMAP of the range, to that requester id's listeners.
 * Spaces with only UNMAP listeners get UNMAP of every invalidated range, without a walk.
 * Nothing at all happens while nobody listens (`active` is false: the invalidation path checks
 * one field).
 *
 * Every sync is bounded whatever the guest's tables hold (page-walk-sync.ts): shared or
 * self-referencing tables, `notifierTableLimit` tables in a space's record, `notifierEventBudget`
 * events per sync. Past a bound the space is unmapped whole and `onWalkLimit` told. So one guest
 * action (a register command or a descriptor) costs at most one bounded sync per listening space.
 *
 * IOTLB invalidations use the context as of the space's last context sync, as hardware uses its
 * context cache: a context entry changed without a context-cache invalidation is not seen.
 *
 * Scalable mode (scalable-spaces.ts): a space is a requester id and a PASID; its PASID-table entry
 * is read again on context-cache invalidations (as above) and on PASID-cache invalidations naming
 * its DID (and PASID), where only a changed entry unmaps and replays. IOTLB invalidations of its
 * DID and PASID-based IOTLB invalidations of its DID and PASID sync a second-stage space like an
 * IOTLB invalidation in legacy mode; for a first-stage space they are IOMMU_HWPT_INVALIDATE events
 * to its nested notifier (nested-types.ts), as are device-TLB invalidations of its requester id.
 */
import { NO_PASID } from "../../spec/scalable.ts";
import { IommuAddressSpace, NESTED_LISTENER, SpaceMode, type SpaceOwner } from "./address-space.ts";
import { IOMMU_VTD_INV_ALL_PAGES, IOMMU_VTD_INV_FLAGS_LEAF } from "./nested-types.ts";
import { ScalableSpaces, type ScalableModeSource, type ScalableRootSource } from "./scalable-spaces.ts";
import { ContextReader, ROOT_BLOCKED, ROOT_TRANSLATION_OFF } from "./context-read.ts";
import { NotifierStats } from "./notifier-stats.ts";

export { ROOT_BLOCKED, ROOT_TRANSLATION_OFF, NotifierStats };
import type { WalkConfig } from "../registers/capabilities.ts";
import type { InvalidationListener } from "../invalidation/cache-invalidation.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import {
  NotifierError, NotifierFlag, type IommuEvent, type IommuNotifier, type NotifierErrorReport, type NotifierEventType, type WalkLimitReport,
} from "./notifier-types.ts";
import type { ResolvedOptions } from "../options.ts";
import { PageWalkSync, type WalkCut } from "./page-walk-sync.ts";
import { hasLeaf, SpaceRecord } from "./record.ts";

const MAP = NotifierFlag.MAP, UNMAP = NotifierFlag.UNMAP, DEVIOTLB_UNMAP = NotifierFlag.DEVIOTLB_UNMAP;
/** Spaces with these listeners follow the guest's context (and PASID) entries. */
const SYNCED = MAP | UNMAP | NESTED_LISTENER;

export class IommuNotifiers implements InvalidationListener, SpaceOwner {
  /** True while any address space has a notifier: the invalidation path checks only this. */
  active = false;
  readonly stats = new NotifierStats();
  readonly awBits: number;
  /**
   * Called when a sync of `space` went past a bound (shared or self-referencing tables, more than
   * `notifierTableLimit` tables, more than `notifierEventBudget` events): the space was unmapped
   * whole and is mirrored again from its next context invalidation, if its tables then fit.
   */
  onWalkLimit: ((space: IommuAddressSpace, report: WalkLimitReport) => void) | undefined;
  /** Called when an address space gets its first notifier (QEMU: notify_flag_changed from none). */
  onFirstListener: ((space: IommuAddressSpace) => void) | undefined;
  /** Called when an address space loses its last notifier. */
  onLastListener: ((space: IommuAddressSpace) => void) | undefined;
  /** A notifier threw; the unit went on. Without a handler the error is only counted. */
  onNotifierError: ((report: NotifierErrorReport) => void) | undefined;

  private readonly spaces = new Map<number, IommuAddressSpace>();
  /** Spaces with a MAP, UNMAP or nested notifier: the ones invalidations sync. Replaced, never mutated. */
  private synced: readonly IommuAddressSpace[] = [];
  private listening = 0;
  private readonly walker: PageWalkSync;
  private readonly context: ContextReader;
  /** A notifier made the unit invalidate again while a sync ran: that work waits its turn. */
  private busy = false;
  private readonly pending: (() => void)[] = [];
  /** Scalable mode (set by the device when the unit offers it). */
  private scalable: ScalableSpaces | undefined;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly memory: MemoryAccess,
    cfg: WalkConfig,
    /** The latched legacy root table while translation is enabled; ROOT_TRANSLATION_OFF, ROOT_BLOCKED. */
    translationRoot: () => number,
  ) {
    this.awBits = cfg.awBits;
    this.walker = new PageWalkSync(memory, cfg, this.stats, options.notifierTableLimit, options.notifierEventBudget);
    this.context = new ContextReader(memory, cfg, translationRoot);
  }

  /**
   * The address space of requester id `sid` (bus << 8 | dev << 3 | fn): of its requests without a
   * PASID, or (scalable mode) of its requests with PASID `pasid`.
   */
  addressSpace(sid: number, pasid: number = NO_PASID): IommuAddressSpace {
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new NotifierError("bad-argument", `address space: requester id ${String(sid)} is not in 0..0xffff`);
    if (pasid !== NO_PASID && (!Number.isInteger(pasid) || pasid < 0 || pasid > 0xf_ffff)) {
      throw new NotifierError("bad-argument", `address space: PASID ${String(pasid)} is not in 0..0xfffff (or NO_PASID, -1)`);
    }
    const key = (pasid + 1) * 0x1_0000 + sid;
    let space = this.spaces.get(key);
    if (!space) this.spaces.set(key, (space = new IommuAddressSpace(sid, this, pasid)));
    return space;
  }

  /** Scalable mode: spaces read PASID entries under `root`'s table while `mode` is latched (device.ts). */
  scalableMode(root: ScalableRootSource, mode: ScalableModeSource): void {
    this.scalable = this.context.scalable = new ScalableSpaces(this.memory, root, mode, this.stats);
  }

  /** Address spaces with at least one notifier. */
  listeningSpaces(): IommuAddressSpace[] {
    return [...this.spaces.values()].filter((s) => s.notifierCount > 0);
  }

  // ---- SpaceOwner ----

  checkMapAllowed(space: IommuAddressSpace): void {
    if (this.options.cachingMode || this.options.allowMapNotifiersWithoutCachingMode) return;
    throw new NotifierError("caching-mode-required",
      `device ${space.name} requires caching mode: a MAP notifier can only mirror the guest's mappings when CAP.CM = 1 makes the guest ` +
      "invalidate every new one (VtdDevice option cachingMode: true; allowMapNotifiersWithoutCachingMode: true forces it, for demonstrations only)");
  }

  listenersChanged(space: IommuAddressSpace, before: number, after: number): void {
    if (!(before & SYNCED) && after & SYNCED) {
      this.synced = [...this.synced, space];
      this.context.read(space);
    } else if (before & SYNCED && !(after & SYNCED)) {
      this.synced = this.synced.filter((s) => s !== space);
    }
    if (!(before & MAP) && after & MAP) {
      // The record starts as what the tables hold now; the notifier learns it through replay.
      this.context.read(space);
      this.startRecord(space, false);
    } else if (before & MAP && !(after & MAP)) {
      space.record = undefined;
      space.identityReported = false;
    }
    if (before === 0 && after !== 0) this.listening++;
    if (before !== 0 && after === 0) this.listening--;
    this.active = this.listening > 0;
    if (before === 0 && after !== 0) this.onFirstListener?.(space);
    if (before !== 0 && after === 0) this.onLastListener?.(space);
  }

  nestedChanged(space: IommuAddressSpace): void {
    this.scalable?.rebind(space);
  }

  counted(type: NotifierEventType): void {
    if (type === MAP) this.stats.mapEvents++;
    else if (type === UNMAP) this.stats.unmapEvents++;
    else this.stats.deviceIotlbUnmapEvents++;
  }

  reportError(space: IommuAddressSpace, notifier: IommuNotifier, event: IommuEvent, error: unknown): void {
    this.stats.notifierErrors++;
    const handler = this.onNotifierError;
    if (!handler) return;
    try {
      handler({ sid: space.sid, notifier, event, error });
    } catch {
      // The embedder's error handler must not break the unit either.
    }
  }

  // ---- InvalidationListener: called by Invalidation only while `active` ----

  iotlbPages(did: number, address: number, span: number): void {
    if (this.busy) return void this.pending.push(() => this.iotlbPages(did, address, span));
    this.busy = true;
    try {
      for (const space of this.synced) {
        if (space.did !== did) continue;
        if (space.mode === SpaceMode.FirstStage) this.scalable?.invalidate(space, "iotlb", address, span / 4096, 0);
        if (space.mode !== SpaceMode.Translated) continue;
        this.stats.pageSyncs++;
        this.syncRange(space, address, address + span);
      }
    } finally {
      this.finish();
    }
  }

  iotlbDomain(did: number): void {
    if (this.busy) return void this.pending.push(() => this.iotlbDomain(did));
    this.busy = true;
    try {
      for (const space of this.synced) {
        if (space.did !== did) continue;
        if (space.mode === SpaceMode.FirstStage) this.scalable?.invalidate(space, "iotlb", 0, IOMMU_VTD_INV_ALL_PAGES, 0);
        if (space.mode !== SpaceMode.Translated) continue;
        this.stats.domainSyncs++;
        this.syncRange(space, 0, space.inputLimit);
      }
    } finally {
      this.finish();
    }
  }

  iotlbGlobal(): void {
    if (this.busy) return void this.pending.push(() => this.iotlbGlobal());
    this.busy = true;
    try {
      for (const space of this.synced) {
        if (space.mode === SpaceMode.FirstStage) this.scalable?.invalidate(space, "iotlb", 0, IOMMU_VTD_INV_ALL_PAGES, 0);
        if (space.mode !== SpaceMode.Translated) continue;
        this.stats.globalSyncs++;
        this.syncRange(space, 0, space.inputLimit);
      }
    } finally {
      this.finish();
    }
  }

  contextGlobal(): void {
    this.resync(() => true);
  }

  contextDomain(did: number): void {
    // A scalable-mode context entry has no DID: the unit drops every PASID-cache entry, so every space reads again.
    const all = this.scalable?.active === true;
    this.resync((space) => all || space.did === did);
  }

  /** Source-ids matching `sid` under the function mask (as the context cache matches them, VT-d §11.4.7.1). */
  contextDevice(sid: number, functionMask: number): void {
    const ignore = functionMask === 0 ? 0 : ((1 << functionMask) - 1) << (3 - functionMask);
    const want = sid & ~ignore;
    this.resync((space) => (space.sid & ~ignore) === want);
  }

  everything(): void {
    this.resync(() => true);
  }

  deviceTlb(sid: number, start: number, end: number): void {
    this.scalable?.deviceTlb(this.synced, sid, start, end);
    const space = this.spaces.get(sid);
    if (!space || !(space.flags & DEVIOTLB_UNMAP)) return;
    const limit = 2 ** this.awBits;
    if (start >= limit) return;
    space.emit(DEVIOTLB_UNMAP, start, Math.min(end, limit) - start, 0, 0);
  }

  /**
   * PASID-cache invalidation (VT-d 5.10 §6.5.2.2; granularity 0 domain, 1 PASID in the domain, 3
   * all): each space whose entry was or now is of that DID (and PASID) reads it again; a changed
   * entry unmaps and replays (second stage) or is told its nested notifier (first stage).
   */
  pasidCacheInvalidated(granularity: number, did: number, pasid: number): void {
    if (this.busy) return void this.pending.push(() => this.pasidCacheInvalidated(granularity, did, pasid));
    const scalable = this.scalable;
    if (scalable === undefined || !scalable.active) return;
    this.busy = true;
    try {
      for (const space of this.synced) {
        if (granularity !== 3 && !(matches(space.did, space.entryPasid) || scalable.peek(space, matches))) continue;
        this.pasidEntryChanged(space);
      }
    } finally {
      this.finish();
    }
    function matches(entryDid: number, entryPasid: number): boolean {
      return entryDid === did && (granularity === 0 || entryPasid === pasid);
    }
  }

  /**
   * PASID-based IOTLB invalidation (§6.5.2.4) of the spaces of DID `did` whose entry is PASID
   * `pasid`: `span` bytes at `address` (Infinity: the whole PASID); `leafOnly` is the descriptor's IH.
   */
  pasidIotlbInvalidated(did: number, pasid: number, address: number, span: number, leafOnly: boolean): void {
    if (this.busy) return void this.pending.push(() => this.pasidIotlbInvalidated(did, pasid, address, span, leafOnly));
    this.busy = true;
    try {
      const whole = !(span < IOMMU_VTD_INV_ALL_PAGES * 4096);
      for (const space of this.synced) {
        if (space.did !== did || space.entryPasid !== pasid) continue;
        if (space.mode === SpaceMode.FirstStage) {
          this.scalable?.invalidate(space, "iotlb", whole ? 0 : address, whole ? IOMMU_VTD_INV_ALL_PAGES : span / 4096, leafOnly ? IOMMU_VTD_INV_FLAGS_LEAF : 0);
        } else if (space.mode === SpaceMode.Translated) {
          if (whole) this.stats.domainSyncs++;
          else this.stats.pageSyncs++;
          this.syncRange(space, whole ? 0 : address, whole ? space.inputLimit : address + span);
        }
      }
    } finally {
      this.finish();
    }
  }

  // ---- syncing ----

  private finish(): void {
    this.busy = false;
    while (this.pending.length > 0) this.pending.shift()!();
  }

  private resync(matches: (space: IommuAddressSpace) => boolean): void {
    if (this.busy) return void this.pending.push(() => this.resync(matches));
    this.busy = true;
    try {
      for (const space of this.synced) {
        if (!matches(space)) continue;
        this.stats.contextSyncs++;
        this.unmapAllAndReplay(space);
      }
    } finally {
      this.finish();
    }
  }

  /** [start, end) of a translated space, against the record (MAP listeners) or as one UNMAP (UNMAP listeners only). */
  private syncRange(space: IommuAddressSpace, start: number, end: number): void {
    if (end > space.inputLimit) end = space.inputLimit;
    if (start >= end) return;
    if (!(space.flags & MAP)) return void space.emit(UNMAP, start, end - start, 0, 0);
    if (space.walkLimited) return; // nothing is mirrored until the next context sync
    const record = space.record!;
    const cut = this.walker.sync(record, space.tableRoot, space.levels, start, end, space);
    if (cut !== undefined) this.stopMirroring(space, record, true, cut);
  }

  /** Past a bound: UNMAP everything reported (the shadow then holds nothing stale) and say so. */
  private stopMirroring(space: IommuAddressSpace, record: SpaceRecord, reported: boolean, cut: WalkCut): void {
    const stats = this.stats;
    stats.walkLimitHits++;
    if (cut.cause === "shared-tables") stats.sharedTableCuts++;
    else if (cut.cause === "table-limit") stats.tableLimitCuts++;
    else stats.eventBudgetCuts++;
    space.walkLimited = true;
    // UNMAP whole when anything was reported: before this sync (still in the record) or by it.
    // (`record` is the one the sync walked: a notifier may have dropped the space's since.)
    if (reported && (cut.events > 0 || hasLeaf(record.root))) space.emit(UNMAP, 0, 2 ** this.awBits, 0, 0);
    record.reset();
    const handler = this.onWalkLimit;
    if (!handler) return;
    try {
      handler(space, {
        sid: space.sid, cause: cut.cause, limit: cut.limit, tablesVisited: cut.tablesVisited, distinctTables: cut.distinctTables, events: cut.events,
      });
    } catch {
      // The embedder's handler must not break the unit.
    }
  }

  private unmapAllAndReplay(space: IommuAddressSpace): void {
    if (this.reachable(space)) space.emit(UNMAP, 0, 2 ** this.awBits, 0, 0);
    this.context.read(space);
    if (space.flags & MAP) this.startRecord(space, true);
    this.scalable?.rebind(space);
  }

  /** MAP/UNMAP listeners may hold something of the space (one UNMAP of the whole width withdraws it). */
  private reachable(space: IommuAddressSpace): boolean {
    if (space.flags & MAP) return space.identityReported || (space.record !== undefined && hasLeaf(space.record.root));
    return (space.flags & UNMAP) !== 0 && space.mode !== SpaceMode.None;
  }

  /** A PASID-cache invalidation reached the space: its entry again; only a change is reported. */
  private pasidEntryChanged(space: IommuAddressSpace): void {
    const { mode, did, tableRoot, levels, entryPasid } = space;
    const reachable = this.reachable(space);
    this.context.read(space);
    if (space.mode !== mode || space.did !== did || space.tableRoot !== tableRoot || space.levels !== levels || space.entryPasid !== entryPasid) {
      this.stats.pasidEntrySyncs++;
      if (reachable) space.emit(UNMAP, 0, 2 ** this.awBits, 0, 0);
      if (space.flags & MAP) this.startRecord(space, true);
    }
    this.scalable?.rebind(space);
  }

  /** A fresh record of what the space maps now, reported as MAP events when `report`. */
  private startRecord(space: IommuAddressSpace, report: boolean): void {
    // The space's record is reused (emptied), so a guest repeating context invalidations allocates nothing here.
    const record = space.record ?? new SpaceRecord();
    record.reset();
    space.record = record;
    space.walkLimited = false;
    space.identityReported = space.mode === SpaceMode.Identity;
    if (space.mode === SpaceMode.Identity) {
      if (report) space.emit(MAP, 0, 2 ** this.awBits, 0, 3);
    } else if (space.mode === SpaceMode.Translated) {
      const cut = this.walker.sync(record, space.tableRoot, space.levels, 0, space.inputLimit, report ? space : undefined);
      if (cut !== undefined) this.stopMirroring(space, record, report, cut);
    }
  }
}
