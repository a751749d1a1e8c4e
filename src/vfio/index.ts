/** A VFIO-like consumer of the unit's notifiers: a host IOMMU shadow and an assigned device. */
export { assignDevice, VfioAssignment, type AssignOptions } from "./vfio.ts";
export { HostIommu, HostIommuError, type HostMapping } from "./host-iommu.ts";
export { AssignedDevice, type HostDmaFault } from "./assigned-device.ts";
export { NestedHwpt, HOST_IOTLB_ENTRIES } from "./nested-hwpt.ts";
