/**
 * One requester id's DMA address space as notifiers see it (QEMU's VTDAddressSpace with its
 * IOMMU memory region): the notifiers registered on it, the context it was last synced with,
 * and (while a MAP notifier listens) the record of every mapping reported, which the
 * invalidations keep in step with the guest's tables (see page-walk-sync.ts). In scalable mode a
 * space is a requester id and a PASID (requests without one: the context entry's RID_PASID), and
 * a nested notifier (nested-types.ts) may listen for its first-stage table instead.
 */
import {
  bdf, NotifierError, NotifierFlag, type IommuEvent, type IommuNotifier, type NotifierEventType, type RegisterOptions,
} from "./notifier-types.ts";
import type { SyncSink } from "./page-walk-sync.ts";
import type { IommuHwptVtdS1, NestedNotifier } from "./nested-types.ts";
import { forEachLeaf, type SpaceRecord } from "./record.ts";

const MAP = NotifierFlag.MAP, UNMAP = NotifierFlag.UNMAP;
/** In `flags`: a nested notifier listens (not a NotifierFlag: it has its own registration). */
export const NESTED_LISTENER = 8;

/** How the space translates, as of its last context sync. */
export const SpaceMode = {
  /** No usable context (not present, invalid): nothing is reachable. */
  None: 0,
  /** TE off, or a pass-through context: every IOVA is its own address. */
  Identity: 1,
  /** Second-stage tables. */
  Translated: 2,
  /** Scalable mode, a PASID entry with PGTT = first stage: no MAP/UNMAP; a nested notifier attaches the table. */
  FirstStage: 3,
} as const;
export type SpaceMode = (typeof SpaceMode)[keyof typeof SpaceMode];

interface Registration {
  readonly notifier: IommuNotifier;
  readonly events: number;
  readonly start: number;
  readonly end: number;
}

/** What the address space needs from the registry it belongs to. */
export interface SpaceOwner {
  readonly awBits: number;
  /** A nested notifier registered or went (NESTED_LISTENER in `flags`). */
  nestedChanged(space: IommuAddressSpace): void;
  /** Refuses MAP notifiers while CAP.CM = 0 unless the unsafe option is set. */
  checkMapAllowed(space: IommuAddressSpace): void;
  /** Registration changed: the space may start or stop needing syncs. */
  listenersChanged(space: IommuAddressSpace, before: number, after: number): void;
  counted(type: NotifierEventType): void;
  reportError(space: IommuAddressSpace, notifier: IommuNotifier, event: IommuEvent, error: unknown): void;
}

export class IommuAddressSpace implements SyncSink {
  /** bus:device.function of the requester id. */
  readonly name: string;
  private registrations: readonly Registration[] = [];
  /** Union of the registered notifiers' event flags, and NESTED_LISTENER. */
  flags = 0;
  /** The nested notifier, if one is registered (at most one: the host attaches one hwpt per space). */
  nested: NestedNotifier | undefined = undefined;

  // The context as of the last context sync (what the unit's context cache would hold).
  mode: SpaceMode = SpaceMode.None;
  did = 0;
  tableRoot = 0;
  levels = 0;
  /** First IOVA beyond the space. */
  inputLimit = 0;
  /** Scalable mode: the PASID the entry was found under (the request's or RID_PASID); -1 when none was found. */
  entryPasid = -1;
  /** FirstStage mode: the entry's first-stage table as the host would attach it. */
  firstStage: IommuHwptVtdS1 | undefined = undefined;
  /** What the nested notifier was last told (hwptAlloc), undefined once detached or never attached. */
  attached: IommuHwptVtdS1 | undefined = undefined;
  /**
   * The unit faults (0xE) on DMA whose output is in the interrupt range 0xFEEx_xxxx (VT-d §3.14)
   * under this context: with TE on (second-stage and pass-through contexts), not with TE off.
   * A consumer that maps memory must then leave that range out of what MAP events give it.
   */
  interruptRangeBlocked = false;

  /** While a MAP notifier listens: what was reported from the tables. */
  record: SpaceRecord | undefined;
  /** While a MAP notifier listens: the identity mapping of a Identity space was reported. */
  identityReported = false;
  /** A sync went past a bound (WalkLimitReport): nothing is mirrored until the next context sync. */
  walkLimited = false;

  /** `pasid`: requests with that PASID (scalable mode), or -1 (NO_PASID) for requests without one. */
  constructor(readonly sid: number, private readonly owner: SpaceOwner, readonly pasid = -1) {
    this.name = pasid < 0 ? bdf(sid) : `${bdf(sid)} PASID ${pasid}`;
  }

  /** Guest tables the record holds now (at most the unit's `notifierTableLimit`); 0 without a MAP notifier. */
  get recordTables(): number {
    return this.record === undefined ? 0 : this.record.tables;
  }

  /** Notifiers registered: MAP/UNMAP/DEVIOTLB_UNMAP ones and the nested one. */
  get notifierCount(): number {
    return this.registrations.length + (this.nested === undefined ? 0 : 1);
  }

  /**
   * Registers `notifier` for `options.events` (NotifierFlag bits) over `options.range`. A MAP
   * notifier needs CAP.CM = 1 (QEMU: "device 00:04.0 requires caching mode"); it learns what is
   * mapped already only through `replay`.
   */
  register(notifier: IommuNotifier, options: RegisterOptions): void {
    if (typeof notifier !== "function") throw new NotifierError("bad-argument", `device ${this.name}: a notifier must be a function, got ${typeof notifier}`);
    const events = options?.events;
    if (typeof events !== "number" || !Number.isInteger(events) || events <= 0 || (events & ~7) !== 0) {
      throw new NotifierError("bad-events", `device ${this.name}: events must be a non-empty combination of NotifierFlag.MAP | UNMAP | DEVIOTLB_UNMAP (1, 2, 4), got ${String(events)}`);
    }
    if (this.find(notifier) >= 0) throw new NotifierError("already-registered", `device ${this.name}: this notifier is already registered (unregister it first)`);
    const { start, end } = this.checkRange(options.range);
    if (events & MAP) this.owner.checkMapAllowed(this);
    const before = this.flags;
    this.registrations = [...this.registrations, { notifier, events, start, end }];
    this.flags = before | events;
    this.owner.listenersChanged(this, before, this.flags);
  }

  unregister(notifier: IommuNotifier): void {
    const index = this.find(notifier);
    if (index < 0) throw new NotifierError("not-registered", `device ${this.name}: unregister of a notifier that is not registered here`);
    const before = this.flags;
    this.registrations = this.registrations.filter((_, i) => i !== index);
    this.flags = this.registrations.reduce((flags, r) => flags | r.events, this.flags & NESTED_LISTENER);
    this.owner.listenersChanged(this, before, this.flags);
  }

  /**
   * Registers the host's nested notifier (iommufd's model, nested-types.ts): told hwptAlloc at once
   * if the space's PASID entry is first-stage now, then of every change of it and of every
   * invalidation of its caches. No caching mode needed: nothing is shadowed.
   */
  registerNested(notifier: NestedNotifier): void {
    if (typeof notifier !== "object" || notifier === null || typeof notifier.hwptAlloc !== "function" || typeof notifier.hwptDetach !== "function" ||
      typeof notifier.hwptInvalidate !== "function") {
      throw new NotifierError("bad-argument", `device ${this.name}: a nested notifier must have hwptAlloc, hwptDetach and hwptInvalidate`);
    }
    if (this.nested !== undefined) throw new NotifierError("already-registered", `device ${this.name}: a nested notifier is already registered (unregister it first)`);
    const before = this.flags;
    this.nested = notifier;
    this.flags = before | NESTED_LISTENER;
    this.owner.listenersChanged(this, before, this.flags);
    this.owner.nestedChanged(this);
  }

  unregisterNested(notifier: NestedNotifier): void {
    if (this.nested !== notifier) throw new NotifierError("not-registered", `device ${this.name}: unregister of a nested notifier that is not registered here`);
    const before = this.flags;
    this.nested = undefined;
    this.attached = undefined;
    this.flags = before & ~NESTED_LISTENER;
    this.owner.listenersChanged(this, before, this.flags);
  }

  /**
   * Tells `notifier` alone every mapping the space has now (MAP events within its range), as
   * QEMU's replay does after VFIO registers. Returns the number of events delivered; 0 for a
   * notifier without MAP.
   */
  replay(notifier: IommuNotifier): number {
    const index = this.find(notifier);
    if (index < 0) throw new NotifierError("not-registered", `device ${this.name}: replay for a notifier that is not registered here`);
    const r = this.registrations[index]!;
    if ((r.events & MAP) === 0) return 0;
    let delivered = 0;
    const visit = (iova: number, size: number, output: number, permission: number) => {
      if (iova >= r.end || iova + size <= r.start) return;
      delivered++;
      const event: IommuEvent = { type: MAP, sid: this.sid, iova, translatedAddress: output, addressMask: size - 1, permission };
      try {
        r.notifier(event);
      } catch (error) {
        this.owner.reportError(this, r.notifier, event, error);
      }
    };
    if (this.identityReported) visit(0, 2 ** this.owner.awBits, 0, 3);
    else if (this.record && this.mode === SpaceMode.Translated) forEachLeaf(this.record.root, this.levels, 0, r.start, r.end, visit);
    return delivered;
  }

  /** The mappings reported so far (MAP notifiers only), in IOVA order: for tests and debugging. Allocates. */
  reported(): { iova: number; size: number; translatedAddress: number; permission: number }[] {
    const out: { iova: number; size: number; translatedAddress: number; permission: number }[] = [];
    if (this.identityReported) out.push({ iova: 0, size: 2 ** this.owner.awBits, translatedAddress: 0, permission: 3 });
    else if (this.record && this.mode === SpaceMode.Translated) {
      forEachLeaf(this.record.root, this.levels, 0, 0, Infinity, (iova, size, translatedAddress, permission) => out.push({ iova, size, translatedAddress, permission }));
    }
    return out;
  }

  // ---- SyncSink: differences found by a walk ----

  map(iova: number, size: number, output: number, permission: number): void {
    this.emit(MAP, iova, size, output, permission);
  }

  unmap(iova: number, size: number, output: number): void {
    this.emit(UNMAP, iova, size, output, 0);
  }

  /** Delivers one event to every notifier registered for its type whose range it touches. */
  emit(type: NotifierEventType, iova: number, size: number, output: number, permission: number): void {
    this.owner.counted(type);
    const registrations = this.registrations;
    let event: IommuEvent | undefined;
    for (let i = 0; i < registrations.length; i++) {
      const r = registrations[i]!;
      if ((r.events & type) === 0 || iova >= r.end || iova + size <= r.start) continue;
      event ??= { type, sid: this.sid, iova, translatedAddress: output, addressMask: size - 1, permission };
      try {
        r.notifier(event);
      } catch (error) {
        this.owner.reportError(this, r.notifier, event, error);
      }
    }
  }

  private find(notifier: IommuNotifier): number {
    return this.registrations.findIndex((r) => r.notifier === notifier);
  }

  private checkRange(range: RegisterOptions["range"]): { start: number; end: number } {
    const limit = 2 ** this.owner.awBits;
    if (range === undefined) return { start: 0, end: limit };
    const number = (name: string, value: unknown): number => {
      const v = typeof value === "bigint" ? Number(value) : value;
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
        throw new NotifierError("bad-range", `device ${this.name}: range ${name} must be a whole number of bytes, got ${String(value)}`);
      }
      return v;
    };
    const start = number("start", range.start), end = number("end", range.end);
    if (end <= start) throw new NotifierError("bad-range", `device ${this.name}: empty range [0x${start.toString(16)}, 0x${end.toString(16)})`);
    if (end > limit) {
      throw new NotifierError("bad-range",
        `device ${this.name}: range [0x${start.toString(16)}, 0x${end.toString(16)}) goes beyond the unit's ${this.owner.awBits}-bit address width (end at most 0x${limit.toString(16)})`);
    }
    return { start, end };
  }
}
