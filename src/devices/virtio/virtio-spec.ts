/**
 * Numbers of the virtio specification, pinned to Virtio 1.2 (OASIS, cs01): device status,
 * feature bits, the PCI transport's capabilities and common configuration layout, split
 * virtqueue layouts and the block device's config and requests. One place for each fact: the
 * transport, the queue, the block device and the tests import from here.
 */

/** Virtio 1.2 §2.1: device status bits. */
export const DeviceStatus = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** Virtio 1.2 §6: reserved (device-independent) feature bits, as bit numbers. */
export const Feature = {
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
} as const;

export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** Virtio 1.2 §4.1.2: PCI IDs of a modern (non-transitional) device: 0x1040 + device type. */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
export const VIRTIO_PCI_MODERN_DEVICE_ID_BASE = 0x1040;
/** Virtio 1.2 §4.1.2.1: non-transitional devices SHOULD have a revision id of 1 or higher. */
export const VIRTIO_PCI_MODERN_REVISION = 1;
/** Virtio 1.2 §5: device types. */
export const VirtioDeviceType = { BLOCK: 2 } as const;

/** PCI Local Bus 3.0 §6.7: the vendor-specific capability id virtio uses. */
export const PCI_CAP_ID_VENDOR_SPECIFIC = 0x09;

/** Virtio 1.2 §4.1.4: `cfg_type` of struct virtio_pci_cap. */
export const VirtioPciCapType = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
} as const;

/**
 * Virtio 1.2 §4.1.4: struct virtio_pci_cap, offsets from the capability (ID and next come first).
 * The notification capability appends `notify_off_multiplier` (§4.1.4.4).
 */
export const VirtioPciCap = {
  CAP_LEN: 2,
  CFG_TYPE: 3,
  BAR: 4,
  ID: 5,
  OFFSET: 8,
  LENGTH: 12,
  NOTIFY_OFF_MULTIPLIER: 16,
  SIZE: 16,
  NOTIFY_SIZE: 20,
} as const;

/** Virtio 1.2 §4.1.4.3: struct virtio_pci_common_cfg. */
export const CommonCfg = {
  DEVICE_FEATURE_SELECT: 0x00, // le32 RW
  DEVICE_FEATURE: 0x04, // le32 RO
  DRIVER_FEATURE_SELECT: 0x08, // le32 RW
  DRIVER_FEATURE: 0x0c, // le32 RW
  CONFIG_MSIX_VECTOR: 0x10, // le16 RW
  NUM_QUEUES: 0x12, // le16 RO
  DEVICE_STATUS: 0x14, // u8 RW
  CONFIG_GENERATION: 0x15, // u8 RO
  QUEUE_SELECT: 0x16, // le16 RW
  QUEUE_SIZE: 0x18, // le16 RW
  QUEUE_MSIX_VECTOR: 0x1a, // le16 RW
  QUEUE_ENABLE: 0x1c, // le16 RW
  QUEUE_NOTIFY_OFF: 0x1e, // le16 RO
  QUEUE_DESC: 0x20, // le64 RW
  QUEUE_DRIVER: 0x28, // le64 RW
  QUEUE_DEVICE: 0x30, // le64 RW
  /** The 1.0 structure's size; queue_notify_data and queue_reset (1.2) need features not offered. */
  SIZE: 0x38,
} as const;

/** Virtio 1.2 §4.1.4.3: "no MSI-X vector" (there is no MSI-X capability here). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** Virtio 1.2 §4.1.4.5: ISR status bits. */
export const IsrStatus = { QUEUE: 1, DEVICE_CONFIGURATION: 2 } as const;

/** Virtio 1.2 §2.7.5: struct virtq_desc (16 bytes) and its flags. */
export const VirtqDesc = { ADDR: 0, LEN: 8, FLAGS: 12, NEXT: 14, SIZE: 16 } as const;
export const VirtqDescFlags = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;

/** Virtio 1.2 §2.7.6: struct virtq_avail: flags, idx, ring[queue size] (le16 each). */
export const VirtqAvail = { FLAGS: 0, IDX: 2, RING: 4 } as const;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

/** Virtio 1.2 §2.7.8: struct virtq_used: flags, idx, ring[queue size] of {le32 id, le32 len}. */
export const VirtqUsed = { FLAGS: 0, IDX: 2, RING: 4, ELEM_SIZE: 8 } as const;

/** Virtio 1.2 §2.7: a split queue's size is a power of two, at most 32768. */
export const VIRTQ_MAX_SIZE = 32768;

/** Virtio 1.2 §5.2.3: block device feature bits. */
export const BlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
} as const;

/** Virtio 1.2 §5.2.4: struct virtio_blk_config (the fields this device fills). */
export const BlkConfig = {
  CAPACITY: 0x00, // le64, in 512-byte sectors
  SIZE_MAX: 0x08, // le32
  SEG_MAX: 0x0c, // le32
  BLK_SIZE: 0x14, // le32
  NUM_QUEUES: 0x22, // le16 (MQ)
  /** Through max_write_zeroes_seg and write_zeroes_may_unmap (+3 unused), 1.2's layout before secure erase. */
  SIZE: 0x3c,
} as const;

/** Virtio 1.2 §5.2.6: the request header (type, reserved, sector) and the trailing status byte. */
export const BlkReqHeader = { TYPE: 0, RESERVED: 4, SECTOR: 8, SIZE: 16 } as const;
export const BlkReqType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
export const BlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export const BLK_SECTOR_SIZE = 512;
/** Virtio 1.2 §5.2.6: the device ID string is up to 20 bytes, NUL-padded. */
export const BLK_ID_BYTES = 20;
