/**
 * The host side of the nested model (iommufd, nested-types.ts): the assigned device's requests are
 * translated by the host IOMMU through the guest's own first-stage table (IOVA → guest-physical),
 * nested on the host's mapping of guest memory (the nesting parent, IOMMU_HWPT_ALLOC_NEST_PARENT:
 * guest-physical → host, here the identity over guest RAM less the interrupt range, which guest
 * RAM never covers). The host IOMMU caches what its walks found in its own IOTLB and drops it only
 * when told (IOMMU_HWPT_INVALIDATE), or when another table is attached: so a guest that skips an
 * invalidation leaves exactly the stale translations real hardware would keep.
 *
 * The walk is the unit's first-stage walk (scalable/first-stage-walk.ts: the same IA-32e rules,
 * A/D bits set in the guest's tables as hardware sets them). The IOTLB is direct mapped and bounded,
 * so an invalidation costs at most its size; a hit serves a read, and a write only where a write
 * walk set the Dirty flag (else the write walks again). Translation allocates nothing.
 */
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT, LEVEL_SIZE } from "../spec/entries.ts";
import { FaultReason } from "../spec/fault-reasons.ts";
import type { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import {
  IOMMU_VTD_INV_FLAGS_LEAF, IOMMU_VTD_S1_SRE, IOMMU_VTD_S1_WPE, type HwptAllocEvent, type HwptInvalidateEvent, type IommuHwptVtdS1,
} from "../vtd-device/notifiers/nested-types.ts";
import { FirstStageWalk } from "../vtd-device/scalable/first-stage-walk.ts";

/** Entries of the host IOTLB (4 KiB translations). */
export const HOST_IOTLB_ENTRIES = 256;
const PAGE = 4096;
const WRITABLE = 1, DIRTY = 2;

export class NestedHwpt {
  /** IOMMU_HWPT_ALLOC + attach calls, detaches, IOMMU_HWPT_INVALIDATE requests (of them: LEAF, device-TLB). */
  allocCalls = 0;
  detachCalls = 0;
  invalidateCalls = 0;
  leafInvalidations = 0;
  deviceTlbInvalidations = 0;
  /** Host IOTLB: hits, walks, entries dropped by invalidations. */
  iotlbHits = 0;
  walks = 0;
  entriesDropped = 0;
  /** The attached stage-1 data (undefined: no nested hwpt attached). */
  data: IommuHwptVtdS1 | undefined = undefined;
  /** Output of the last successful `translate`. */
  hostAddress = 0;

  private readonly walker = new FirstStageWalk();
  /** page + 1 (0: empty), output page, WRITABLE | DIRTY. */
  private readonly tagPage = new Float64Array(HOST_IOTLB_ENTRIES);
  private readonly output = new Float64Array(HOST_IOTLB_ENTRIES);
  private readonly flags = new Uint8Array(HOST_IOTLB_ENTRIES);

  constructor(
    private readonly memory: MemoryAccess,
    /** The host IOMMU's address width (the reserved-bit rule of the walk). */
    private readonly awBits: number,
    /** The device's requests carry supervisor privilege. */
    private readonly privileged: boolean,
  ) {}

  get attached(): boolean {
    return this.data !== undefined;
  }

  /** Translations the host IOTLB holds now. */
  get cachedEntries(): number {
    let n = 0;
    for (let i = 0; i < HOST_IOTLB_ENTRIES; i++) if (this.tagPage[i] !== 0) n++;
    return n;
  }

  /** IOMMU_HWPT_ALLOC with IOMMU_HWPT_DATA_VTD_S1 on the nesting parent, then attach (the old hwpt's cache goes with it). */
  alloc(event: HwptAllocEvent): void {
    this.allocCalls++;
    this.data = event.data;
    this.dropAll();
  }

  detach(): void {
    this.detachCalls++;
    this.data = undefined;
    this.dropAll();
  }

  /** IOMMU_HWPT_INVALIDATE with one iommu_hwpt_vtd_s1_invalidate: the pages [addr, addr + npages × 4 KiB) leave the IOTLB. */
  invalidate(event: HwptInvalidateEvent): void {
    this.invalidateCalls++;
    if (event.cache === "device-tlb") this.deviceTlbInvalidations++;
    const { addr, npages, flags } = event.data;
    // LEAF: paging-structure caches may stay; this host keeps none, so the leaves go either way.
    if (flags & IOMMU_VTD_INV_FLAGS_LEAF) this.leafInvalidations++;
    const first = Math.floor(addr / PAGE);
    if (!(npages < HOST_IOTLB_ENTRIES)) {
      for (let i = 0; i < HOST_IOTLB_ENTRIES; i++) {
        const tag = this.tagPage[i]!;
        if (tag !== 0 && tag - 1 >= first && tag - 1 < first + npages) this.drop(i);
      }
      return;
    }
    for (let page = first; page < first + npages; page++) {
      const i = slot(page);
      if (this.tagPage[i] === page + 1) this.drop(i);
    }
  }

  /**
   * Translates the device's access to `iova`: 0 with `hostAddress` set (valid to the end of its
   * 4 KiB page), or the host's fault reason (the first-stage walk's; 0x87 for the interrupt range).
   */
  translate(iova: number, write: boolean): number {
    const data = this.data;
    if (data === undefined) return FaultReason.PasidEntryNotPresent;
    const inPage = iova % PAGE;
    const page = (iova - inPage) / PAGE;
    const i = slot(page);
    if (this.tagPage[i] === page + 1 && (!write || this.flags[i] === (WRITABLE | DIRTY))) {
      this.iotlbHits++;
      return this.parent(this.output[i]! + inPage);
    }
    if (this.privileged && (data.flags & IOMMU_VTD_S1_SRE) === 0) return FaultReason.PasidEntrySupervisorDisabled;
    this.walks++;
    const w = this.walker;
    const writeProtect = (data.flags & IOMMU_VTD_S1_WPE) !== 0;
    const reason = w.walk(this.memory, data.pgtblAddr, this.awBits, iova, write, !this.privileged, writeProtect, data.executeDisable, true);
    if (reason !== 0) return reason;
    const size = LEVEL_SIZE[w.level]!;
    const outputPage = w.pageOutput + ((iova % size) - inPage);
    const writable = w.writable || (this.privileged && !writeProtect);
    this.tagPage[i] = page + 1;
    this.output[i] = outputPage;
    this.flags[i] = (writable ? WRITABLE : 0) | (write ? DIRTY : 0);
    return this.parent(outputPage + inPage);
  }

  /** The nesting parent: guest-physical addresses are host addresses, but for the interrupt range (never RAM). */
  private parent(address: number): number {
    if (address >= INTERRUPT_RANGE_BASE && address <= INTERRUPT_RANGE_LIMIT) return FaultReason.SmInterruptAddress;
    this.hostAddress = address;
    return 0;
  }

  private drop(i: number): void {
    this.tagPage[i] = 0;
    this.entriesDropped++;
  }

  private dropAll(): void {
    for (let i = 0; i < HOST_IOTLB_ENTRIES; i++) if (this.tagPage[i] !== 0) this.drop(i);
  }
}

function slot(page: number): number {
  return ((page >>> 0) ^ Math.floor(page / 2 ** 32)) & (HOST_IOTLB_ENTRIES - 1);
}
