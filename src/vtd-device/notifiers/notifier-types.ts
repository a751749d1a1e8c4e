/**
 * What an embedder sees of IOMMU notifiers: the event kinds it can listen to, the event it
 * receives, and the errors its own mistakes get. The events follow QEMU's IOMMUTLBEvent
 * (type, iova, translated_addr, addr_mask, perm), which is what VFIO and vhost consume.
 */

/** Event kinds, as bit flags a registration combines (QEMU's IOMMU_NOTIFIER_*). */
export const NotifierFlag = {
  /** A translation appeared: the host may map it. Needs CAP.CM = 1 (see `register`). */
  MAP: 1,
  /** A translation went away or changed: the host must drop it. */
  UNMAP: 2,
  /** A device-TLB invalidation reached the endpoint (an ATS device's own cache). */
  DEVIOTLB_UNMAP: 4,
} as const;
export type NotifierEventType = 1 | 2 | 4;
export const ALL_NOTIFIER_FLAGS = 7;

/** Permission bits of an event: read 1, write 2 (the paging entries' R and W). 0 for unmaps. */
export const EVENT_READ = 1;
export const EVENT_WRITE = 2;

/**
 * One change of an address space. `iova` is aligned to the size, `addressMask` is size - 1 and
 * the size is a power of two (4 KiB, 2 MiB, 1 GiB for leaves; larger for unmaps of whole
 * spaces and for the identity mapping of a space that is not translated). All addresses are
 * numbers (below 2^52). The object is shared by every notifier told of it: treat it as read-only.
 */
export interface IommuEvent {
  readonly type: NotifierEventType;
  /** Requester id of the address space. */
  readonly sid: number;
  readonly iova: number;
  /** Guest-physical address `iova` translates to (MAP; for UNMAP what it used to be, or 0). */
  readonly translatedAddress: number;
  readonly addressMask: number;
  /** EVENT_READ | EVENT_WRITE for MAP; 0 for UNMAP and DEVIOTLB_UNMAP. */
  readonly permission: number;
}

export type IommuNotifier = (event: IommuEvent) => void;

export interface NotifierRange {
  /** First IOVA of interest. */
  start: number | bigint;
  /** First IOVA beyond it (exclusive), at most 2^awBits. */
  end: number | bigint;
}

export interface RegisterOptions {
  /** NotifierFlag bits. */
  events: number;
  /** Events outside the range are not delivered (events are never clipped). Default: the whole address width. */
  range?: NotifierRange;
}

export type NotifierErrorCode = "caching-mode-required" | "already-registered" | "not-registered" | "bad-range" | "bad-events" | "bad-argument";

/** An embedder's mistake in using the notifier API (never a guest's: guests cannot reach this API). */
export class NotifierError extends Error {
  constructor(readonly code: NotifierErrorCode, message: string) {
    super(message);
    this.name = "NotifierError";
  }
}

/** A notifier threw: the unit goes on (the event counts as delivered) and tells the embedder. */
export interface NotifierErrorReport {
  sid: number;
  notifier: IommuNotifier;
  event: IommuEvent;
  error: unknown;
}

/** Why a sync stopped mirroring an address space (see `WalkLimitReport`). */
export type WalkCutCause = "shared-tables" | "table-limit" | "event-budget";

/**
 * A notifier sync went past one of its bounds, whatever the guest's tables hold: the address
 * space was unmapped whole (one UNMAP of the address width, if anything had been reported) and is
 * mirrored again from its next context invalidation, if its tables then fit.
 * - `shared-tables`: the sync met tables it had already walked (a table under several parent
 *   entries, or pointing to itself) more often than it found distinct tables;
 * - `table-limit`: the space's record would hold more than `notifierTableLimit` tables;
 * - `event-budget`: the sync would report more than `notifierEventBudget` MAP and UNMAP events.
 */
export interface WalkLimitReport {
  sid: number;
  cause: WalkCutCause;
  /** The bound passed: allowed table visits (`shared-tables`), `notifierTableLimit` or `notifierEventBudget`. */
  limit: number;
  /** Of the sync that was cut: table visits, distinct tables and events reported before the cut. */
  tablesVisited: number;
  distinctTables: number;
  events: number;
}

/** bus:device.function, as lspci and QEMU print a requester id. */
export function bdf(sid: number): string {
  const hex2 = (v: number) => v.toString(16).padStart(2, "0");
  return `${hex2((sid >> 8) & 0xff)}:${hex2((sid >> 3) & 0x1f)}.${sid & 7}`;
}
