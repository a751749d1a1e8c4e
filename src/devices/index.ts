/**
 * The devices of this project, as a package entry (`v86-vtd/devices`): the edu DMA device and
 * virtio-blk, and the bus interface they are written against (a DMA handle bound to the
 * function's requester id, its interrupts, a scheduler). Platform-neutral: no v86, no node:.
 */
export {
  busAddress, busAddressPlus, mmioAllOnes,
  type BusAddress, type DeviceScheduler, type DmaHandle, type MmioRegion, type PciFunctionPort, type PciInterrupts,
} from "./bus.ts";
export {
  EduDevice, eduPciIdentity, EduReg, EduStatus, EduDmaCommand, EduInterrupt, EDU_ID, EDU_BUFFER_ADDRESS, EDU_BUFFER_SIZE,
  EDU_DEFAULT_DMA_MASK, EDU_FULL_DMA_MASK, EDU_BAR0_SIZE, EDU_MSI_CAPABILITY,
  type EduOptions, type EduStats,
} from "./edu.ts";
export {
  buildConfigSpace, PciConfigSpace, PciReg, PciCommand, PciStatus, MsiCap, MsiControl, PCI_CAP_ID_MSI,
  type PciCapability, type PciFunctionIdentity, type PciMemoryBar, type MsiState,
} from "./pci-config.ts";
export {
  VirtioBlkDevice, virtioBlkPciIdentity, VIRTIO_BLK_DEFAULT_QUEUE_SIZE, VIRTIO_BLK_DEFAULT_SERIAL,
  type VirtioBlkOptions, type VirtioBlkRequest, type VirtioBlkRequestHook, type VirtioBlkStats,
} from "./virtio/virtio-blk.ts";
export { VirtioPciTransport, type VirtioDeviceModel, type VirtioTransportOptions, type VirtioTransportStats } from "./virtio/pci-transport.ts";
export type { QueueFailure, SplitVirtqueue } from "./virtio/split-virtqueue.ts";
