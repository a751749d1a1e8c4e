/**
 * The Linux guest's disk: the project's virtio-blk device (src/devices/virtio) on v86's PCI bus,
 * backed by a Uint8Array, listed in the DMAR's device scope so Linux puts it behind the unit.
 */
import type { PciEndpoint } from "../acpi/dmar.ts";
import { VirtioBlkDevice, virtioBlkPciIdentity } from "../devices/virtio/virtio-blk.ts";
import { VIRTIO_BLK_PCI_SLOT } from "../v86/platform.ts";
import type { V86PciBus } from "../v86/pci-bus.ts";

/** Where BAR0 starts before SeaBIOS assigns it: below edu's 0xFEA00000. */
export const VIRTIO_BLK_BAR0_ADDRESS = 0xfe80_0000;

export interface VirtioDisk {
  device: VirtioBlkDevice;
  bytes: Uint8Array;
  /** The requester id of its DMA (bus << 8 | dev << 3 | fn). */
  sourceId: number;
  endpoint: PciEndpoint;
}

export function attachVirtioDisk(bus: V86PciBus, bytes: Uint8Array): VirtioDisk {
  const attached = bus.attach({ name: "virtio-blk", device: VIRTIO_BLK_PCI_SLOT, identity: virtioBlkPciIdentity(VIRTIO_BLK_BAR0_ADDRESS) }, (port) => new VirtioBlkDevice({ port, disk: bytes }));
  return { device: attached.device, bytes, sourceId: attached.bdf, endpoint: { bus: 0, dev: VIRTIO_BLK_PCI_SLOT, fn: 0 } };
}
