/**
 * Device assignment the way QEMU's VFIO does it behind a vIOMMU: a MAP | UNMAP notifier on the
 * device's address space turns every MAP into a host IOMMU map (read-only when the guest gave
 * no write permission) and every UNMAP into a host unmap; a replay at assignment copies what
 * the guest mapped before. Needs CAP.CM = 1 (registration is refused otherwise, unless the unit
 * was built with the unsafe `allowMapNotifiersWithoutCachingMode`).
 *
 * Like the unit, the shadow never lets the device reach the interrupt range 0xFEEx_xxxx where
 * the unit faults there (interrupt-range.ts): a mapping reaching into it is mirrored only outside it.
 *
 * On a unit offering scalable mode the assignment also takes the nested model, as QEMU does with
 * iommufd: a nested notifier on the same address space (requests without PASID, or with `pasid`)
 * attaches the guest's first-stage table to a nested hwpt (nested-hwpt.ts) while the guest's
 * PASID entry is first-stage, and flushes the host IOTLB on each cache-invalidate event; while it
 * is second-stage or pass-through, the MAP/UNMAP shadow serves as in legacy mode. Both need CAP.CM = 1:
 * a guest invalidates the PASID cache after making an entry present only under caching mode (VT-d
 * 5.10 §6.1), and that invalidation is where the host learns the first-stage table.
 */
import type { VtdDevice } from "../vtd-device/device.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import type { IommuAddressSpace } from "../vtd-device/notifiers/address-space.ts";
import { NotifierFlag, type IommuEvent, type NotifierRange } from "../vtd-device/notifiers/notifier-types.ts";
import type { HwptAllocEvent, HwptInvalidateEvent, NestedNotifier } from "../vtd-device/notifiers/nested-types.ts";
import { NestedHwpt } from "./nested-hwpt.ts";
import { AssignedDevice } from "./assigned-device.ts";
import { HostIommu } from "./host-iommu.ts";
import { blocksOutsideInterruptRange, reachesInterruptRange } from "./interrupt-range.ts";

export interface AssignOptions {
  /** Memory the device's DMA reaches. Default: the unit's (guest RAM as DMA sees it). */
  memory?: GuestMemory;
  /** IOVA range to shadow. Default: the whole address width. */
  range?: NotifierRange;
  /** Scalable mode: the device's requests carry this PASID. Default: none (the context entry's RID_PASID serves them). */
  pasid?: number;
  /** Scalable mode, first stage: the device's requests ask for supervisor privilege. Default: false (user requests). */
  privileged?: boolean;
}

export class VfioAssignment {
  readonly hostIommu = new HostIommu();
  readonly device: AssignedDevice;
  readonly space: IommuAddressSpace;
  /** Scalable mode: the nested hwpt (iommufd's model) the device uses while the guest's entry is first-stage. */
  readonly nestedHwpt: NestedHwpt | undefined;
  /**
   * Events received, by type (MAP, UNMAP); MAPs not wholly inside the range are not mirrored;
   * MAPs reaching into the interrupt range are mirrored only outside it.
   */
  readonly events = { map: 0, unmap: 0, mapOutsideRange: 0, mapClippedAtInterruptRange: 0 };
  private released = false;
  private readonly start: number;
  private readonly end: number;

  constructor(unit: VtdDevice, readonly sid: number, options: AssignOptions = {}) {
    this.space = unit.notifiers.addressSpace(sid, options.pasid);
    this.device = new AssignedDevice(sid, this.hostIommu, options.memory ?? unit.options.memory);
    this.nestedHwpt = unit.options.scalableMode ? new NestedHwpt(this.device.memory, unit.options.awBits, options.privileged === true) : undefined;
    this.device.nested = this.nestedHwpt;
    this.start = Number(options.range?.start ?? 0);
    this.end = options.range === undefined ? Infinity : Number(options.range.end);
    this.space.register(this.notify, { events: NotifierFlag.MAP | NotifierFlag.UNMAP, ...(options.range ? { range: options.range } : {}) });
    this.space.replay(this.notify);
    if (this.nestedHwpt) this.space.registerNested(this.nestedNotifier);
  }

  /** The nested notifier: IOMMU_HWPT_ALLOC / detach / IOMMU_HWPT_INVALIDATE on the nested hwpt. */
  readonly nestedNotifier: NestedNotifier = {
    hwptAlloc: (event: HwptAllocEvent) => this.nestedHwpt?.alloc(event),
    hwptDetach: () => this.nestedHwpt?.detach(),
    hwptInvalidate: (event: HwptInvalidateEvent) => this.nestedHwpt?.invalidate(event),
  };

  /** The notifier: one host IOMMU call per event. */
  readonly notify = (event: IommuEvent): void => {
    if (event.type === NotifierFlag.MAP) {
      this.events.map++;
      // A notifier hears every event touching its range; the device must reach only the range
      // (QEMU asserts a MAP lies inside the notifier's range): a block reaching out is left out.
      if (event.iova < this.start || event.iova + event.addressMask + 1 > this.end) {
        this.events.mapOutsideRange++;
        return;
      }
      const size = event.addressMask + 1;
      if (this.space.interruptRangeBlocked && reachesInterruptRange(event.translatedAddress, size)) {
        this.events.mapClippedAtInterruptRange++;
        const permission = event.permission;
        blocksOutsideInterruptRange(event.iova, event.translatedAddress, size, (iova, blockSize, output) => this.hostIommu.map(iova, blockSize, output, permission));
        return;
      }
      this.hostIommu.map(event.iova, size, event.translatedAddress, event.permission);
    } else if (event.type === NotifierFlag.UNMAP) {
      this.events.unmap++;
      this.hostIommu.unmap(event.iova, event.addressMask + 1);
    }
  };

  /** Unassigns: the notifier goes, the host mappings stay as they were (as after a VFIO close, before teardown). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.space.unregister(this.notify);
    if (this.nestedHwpt) this.space.unregisterNested(this.nestedNotifier);
  }
}

/** Assigns requester id `sid` behind `unit`: the returned device's DMA goes only through the shadow. */
export function assignDevice(unit: VtdDevice, sid: number, options: AssignOptions = {}): VfioAssignment {
  return new VfioAssignment(unit, sid, options);
}
