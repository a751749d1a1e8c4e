/**
 * The nested model of device assignment in scalable mode, as a host using Linux's iommufd sees it:
 * for a PASID-table entry with PGTT = first stage the host is not told mappings (no MAP/UNMAP
 * shadowing); it attaches the guest's first-stage table itself (IOMMU_HWPT_ALLOC of a nested hwpt
 * with IOMMU_HWPT_DATA_VTD_S1, whose parent is the host's own mapping of guest memory) and
 * receives the guest's invalidations of it (IOMMU_HWPT_INVALIDATE with
 * IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 requests). The names are iommufd's (include/uapi/linux/iommufd.h);
 * the values here are this package's own, as TypeScript objects, not the kernel's binary layout.
 *
 * When the unit tells a nested notifier (notifiers.ts, scalable-spaces.ts):
 * - hwptAlloc: the space's PASID-table entry is first-stage (newly, or with another table or other
 *   flags), read when the guest invalidates the PASID cache or the context cache (or SRTP, TE, reset),
 *   and when the notifier registers;
 * - hwptDetach: the entry stopped being a usable first-stage entry at such a point;
 * - hwptInvalidate: a PASID-based IOTLB invalidation of the space's DID and PASID (VT-d 5.10 §6.5.2.4),
 *   an IOTLB invalidation of its DID (the unit drops first-stage entries by DID too), or a device-TLB
 *   invalidation (legacy or PASID-based, §6.5.2.5-6) of its requester id.
 */

/** iommu_hwpt_vtd_s1 flags: supervisor requests (the PASID entry's SRE), extended access (EAFE), write protect (WPE). */
export const IOMMU_VTD_S1_SRE = 1 << 0;
export const IOMMU_VTD_S1_EAFE = 1 << 1;
export const IOMMU_VTD_S1_WPE = 1 << 2;

/** iommu_hwpt_vtd_s1_invalidate flags: only leaf entries changed (the descriptor's IH): paging-structure caches may stay. */
export const IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0;

/** `npages` of an invalidation of every page (iommufd: U64_MAX pages from `addr` 0); 2^52 pages of 4 KiB span 2^64 bytes. */
export const IOMMU_VTD_INV_ALL_PAGES = 2 ** 52;

/** IOMMU_HWPT_DATA_VTD_S1 (struct iommu_hwpt_vtd_s1): the guest's first-stage table as the host attaches it. */
export interface IommuHwptVtdS1 {
  /** IOMMU_VTD_S1_SRE | IOMMU_VTD_S1_EAFE | IOMMU_VTD_S1_WPE, from the PASID entry. */
  readonly flags: number;
  /** FSPTPTR: the guest-physical address of the first-stage PML4 table. */
  readonly pgtblAddr: number;
  /** 48 for 4-level paging (FSPM 00, the only mode the unit offers). */
  readonly addrWidth: number;
  /**
   * The PASID entry's NXE (XD may be set in entries). Not in iommufd's structure: the host here
   * applies the same XD rule as the unit, so both fault on the same entries.
   */
  readonly executeDisable: boolean;
}

/** IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 (struct iommu_hwpt_vtd_s1_invalidate): one cache invalidation request. */
export interface IommuHwptVtdS1Invalidate {
  /** First address, 4 KiB aligned (0 with IOMMU_VTD_INV_ALL_PAGES). */
  readonly addr: number;
  /** 4 KiB pages from `addr`, or IOMMU_VTD_INV_ALL_PAGES. */
  readonly npages: number;
  /** IOMMU_VTD_INV_FLAGS_LEAF or 0. */
  readonly flags: number;
}

/** Which address space an event is about: requester id, the request's PASID (-1: requests without one) and the PASID the entry was found under. */
export interface NestedSpaceId {
  readonly sid: number;
  readonly pasid: number;
  /** The PASID of the entry: the request's, or the context entry's RID_PASID. */
  readonly entryPasid: number;
  /** DID of the PASID entry. */
  readonly did: number;
}

export interface HwptAllocEvent extends NestedSpaceId {
  readonly data: IommuHwptVtdS1;
}

export interface HwptInvalidateEvent extends NestedSpaceId {
  /** "iotlb": an IOTLB or PASID-based IOTLB invalidation; "device-tlb": a device-TLB one sent to the endpoint. */
  readonly cache: "iotlb" | "device-tlb";
  readonly data: IommuHwptVtdS1Invalidate;
}

/** What a host using the nested model registers on an address space (`IommuAddressSpace.registerNested`). */
export interface NestedNotifier {
  /** IOMMU_HWPT_ALLOC of a nested hwpt with `event.data`, and attach to it (replacing the one attached before, if any). */
  hwptAlloc(event: HwptAllocEvent): void;
  /** The first-stage entry went away: detach from the nested hwpt (the device is blocked until another is attached). */
  hwptDetach(event: NestedSpaceId): void;
  /** IOMMU_HWPT_INVALIDATE: drop what the host cached of the range. */
  hwptInvalidate(event: HwptInvalidateEvent): void;
}
