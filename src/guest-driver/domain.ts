/**
 * A domain: a domain id, its page tables (second-stage; in scalable mode first-stage or
 * second-stage, `stage`), its IOVA space and the devices attached to it.
 */
import type { DomainPageTables, Translation } from "./domain-page-tables.ts";
import type { IovaAllocator } from "./iova-allocator.ts";

export type DomainStage = "first" | "second";

/** Requests without PASID use this PASID in scalable mode (the context entry's RID_PASID; Linux's PASID_RID2PASID). */
export const RID_PASID = 0;

export class Domain {
  readonly devices = new Set<number>();
  /** Devices attached with a device-TLB (context TT = 1): unmaps also invalidate their ATS caches. */
  readonly deviceTlbDevices = new Set<number>();

  constructor(
    readonly did: number,
    /** Context AW: 1 = 39-bit, 2 = 48-bit. */
    readonly aw: number,
    readonly widthBits: number,
    readonly tables: DomainPageTables,
    readonly iovas: IovaAllocator,
    /** Which stage its tables are for: "second" in legacy mode; in scalable mode the PASID entries' PGTT. */
    readonly stage: DomainStage = "second",
  ) {}

  /** What the tables map at `iova` now (not what the unit may still have cached). */
  lookup(iova: number): Translation | undefined {
    return this.tables.lookup(iova);
  }
}
