/**
 * Where a virtio PCI function of ours keeps its structures (Virtio 1.2 §4.1.3, §4.1.4): all four
 * in memory BAR0, one 4 KiB page each, described by vendor-specific PCI capabilities after the
 * MSI capability. No VIRTIO_PCI_CAP_PCI_CFG capability: v86 answers config reads from its copy of
 * the config space without asking the device, so the access window could not be served (drivers
 * use the BAR; Linux and SeaBIOS do for a 32-bit memory BAR).
 */
import type { PciCapability, PciFunctionIdentity } from "../pci-config.ts";
import {
  CommonCfg,
  PCI_CAP_ID_VENDOR_SPECIFIC,
  VIRTIO_PCI_MODERN_DEVICE_ID_BASE,
  VIRTIO_PCI_MODERN_REVISION,
  VIRTIO_PCI_VENDOR_ID,
  VirtioPciCap,
  VirtioPciCapType,
} from "./virtio-spec.ts";

export const VirtioBar = {
  INDEX: 0,
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  /** 16 KiB: smaller than v86's 128 KiB MMIO block; the bus shares blocks. */
  SIZE: 0x4000,
} as const;
export const ISR_LENGTH = 4;
/** Virtio 1.2 §4.1.4.4: queue n is notified at NOTIFY + n * multiplier. */
export const NOTIFY_OFF_MULTIPLIER = 4;

export const VIRTIO_MSI_CAPABILITY = 0x40;
/** Offsets of the vendor-specific capabilities, after MSI's 14 bytes. */
export const VirtioCapOffset = { COMMON: 0x50, ISR: 0x60, DEVICE: 0x70, NOTIFY: 0x80 } as const;

function virtioCap(offset: number, cfgType: number, barOffset: number, length: number, notifyMultiplier?: number): PciCapability {
  const capLength = notifyMultiplier === undefined ? VirtioPciCap.SIZE : VirtioPciCap.NOTIFY_SIZE;
  const body = new Uint8Array(capLength - 2);
  const view = new DataView(body.buffer);
  body[VirtioPciCap.CAP_LEN - 2] = capLength;
  body[VirtioPciCap.CFG_TYPE - 2] = cfgType;
  body[VirtioPciCap.BAR - 2] = VirtioBar.INDEX;
  view.setUint32(VirtioPciCap.OFFSET - 2, barOffset, true);
  view.setUint32(VirtioPciCap.LENGTH - 2, length, true);
  if (notifyMultiplier !== undefined) view.setUint32(VirtioPciCap.NOTIFY_OFF_MULTIPLIER - 2, notifyMultiplier, true);
  return { offset, id: PCI_CAP_ID_VENDOR_SPECIFIC, body };
}

export interface VirtioPciShape {
  deviceType: number;
  /** base class << 16 | subclass << 8 | programming interface */
  classCode: number;
  deviceConfigLength: number;
  queueCount: number;
}

/** The PCI identity of a modern virtio function of ours with BAR0 at `bar0Address`. */
export function virtioPciIdentity(shape: VirtioPciShape, bar0Address: number): PciFunctionIdentity {
  const deviceId = VIRTIO_PCI_MODERN_DEVICE_ID_BASE + shape.deviceType;
  return {
    vendorId: VIRTIO_PCI_VENDOR_ID,
    deviceId,
    revisionId: VIRTIO_PCI_MODERN_REVISION,
    classCode: shape.classCode,
    subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
    subsystemId: deviceId,
    interruptPin: 1,
    bars: [{ index: VirtioBar.INDEX, address: bar0Address, size: VirtioBar.SIZE }],
    msiCapability: VIRTIO_MSI_CAPABILITY,
    capabilities: [
      virtioCap(VirtioCapOffset.COMMON, VirtioPciCapType.COMMON_CFG, VirtioBar.COMMON, CommonCfg.SIZE),
      virtioCap(VirtioCapOffset.ISR, VirtioPciCapType.ISR_CFG, VirtioBar.ISR, ISR_LENGTH),
      virtioCap(VirtioCapOffset.DEVICE, VirtioPciCapType.DEVICE_CFG, VirtioBar.DEVICE, shape.deviceConfigLength),
      virtioCap(VirtioCapOffset.NOTIFY, VirtioPciCapType.NOTIFY_CFG, VirtioBar.NOTIFY, shape.queueCount * NOTIFY_OFF_MULTIPLIER, NOTIFY_OFF_MULTIPLIER),
    ],
  };
}
