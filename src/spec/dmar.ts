/**
 * The ACPI DMA Remapping Reporting table (VT-d §8.1) and the structures it carries: byte offsets
 * (little-endian), type codes and flags. Numbers only; src/acpi/dmar.ts builds tables from these.
 */

/** DMAR table header: the 36-byte ACPI header, then these fields (VT-d §8.1). */
export const DMAR_SIGNATURE = "DMAR";
export const DMAR_REVISION = 1;
export const DmarTable = {
  /** Host Address Width - 1: the maximum DMA physical address width, minus one. */
  HOST_ADDRESS_WIDTH: 36,
  FLAGS: 37,
  RESERVED: 38,
  /** First remapping structure. */
  STRUCTURES: 48,
} as const;
export const DmarFlags = {
  INTR_REMAP: 1 << 0,
  /** Valid only with INTR_REMAP. */
  X2APIC_OPT_OUT: 1 << 1,
  DMA_CTRL_PLATFORM_OPT_IN: 1 << 2,
} as const;
/** Linux rejects a table whose Host Address Width field is below this (HAW < 12 bits). */
export const DMAR_MIN_HOST_ADDRESS_WIDTH_FIELD = 11;

/** Remapping structure types, which appear in this order in the table (VT-d §8.2). */
export enum RemappingStructureType {
  Drhd = 0,
  Rmrr = 1,
  Atsr = 2,
  Rhsa = 3,
  Andd = 4,
  Satc = 5,
  Sidp = 6,
}
/** Every remapping structure starts with a u16 type and a u16 length (skip unknown ones by length). */
export const RemappingStructure = { TYPE: 0, LENGTH: 2 } as const;

/** DMA Remapping Hardware Unit Definition (VT-d §8.3). */
export const Drhd = {
  FLAGS: 4,
  /** Bits 3:0: the register set spans 2^N 4 KiB pages. */
  SIZE: 5,
  SEGMENT: 6,
  REGISTER_BASE: 8,
  DEVICE_SCOPES: 16,
} as const;
export const DrhdFlags = {
  /** The unit covers every PCI device of the segment not claimed by another unit. */
  INCLUDE_PCI_ALL: 1 << 0,
} as const;

/** Device scope entry (VT-d §8.3.1): a path from a start bus through {device, function} pairs. */
export const DeviceScope = {
  TYPE: 0,
  /** 6 + 2 * number of path entries. */
  LENGTH: 1,
  FLAGS: 2,
  RESERVED: 3,
  /** IOAPIC id, HPET number or ACPI device number; 0 for PCI devices. */
  ENUMERATION_ID: 4,
  START_BUS: 5,
  PATH: 6,
  PATH_ENTRY_SIZE: 2,
} as const;
export enum DeviceScopeType {
  PciEndpoint = 1,
  PciSubHierarchy = 2,
  IoApic = 3,
  MsiCapableHpet = 4,
  AcpiNamespaceDevice = 5,
}
