/**
 * Where this project's platforms put things: not VT-d numbers, but facts every platform (v86, the
 * in-process machine, the C guest's tests) must agree on, so they live in one place.
 */
import { INTERRUPT_RANGE_BASE } from "./entries.ts";

/** The unit's register page (the DRHD's Register Base Address), as QEMU's q35 places it. */
export const VTD_UNIT_BASE = 0xfed9_0000;
/** One 4 KiB page of registers (DRHD Size field 0). */
export const VTD_REGISTER_PAGE_SIZE = 0x1000;
/** The local APIC's MMIO base (IA-32 default). */
export const LOCAL_APIC_BASE = 0xfee0_0000;
/** MSIs are writes to the interrupt range (VT-d §3.14; Intel SDM §11.11.1). */
export const MSI_ADDRESS_BASE = INTERRUPT_RANGE_BASE;
/** The I/O APIC's MMIO base and id (v86's and QEMU's; v86's SeaBIOS expects id 0). */
export const IOAPIC_BASE = 0xfec0_0000;
export const IOAPIC_ID = 0;
/**
 * The I/O APIC's requester id for interrupt remapping (its DMAR device scope): bus 0xFF, device 0,
 * function 0, as QEMU's q35 gives it (Q35 pseudo bus for platform devices).
 */
export const IOAPIC_SOURCE = { bus: 0xff, dev: 0, fn: 0 } as const;
export const IOAPIC_SOURCE_ID = (IOAPIC_SOURCE.bus << 8) | (IOAPIC_SOURCE.dev << 3) | IOAPIC_SOURCE.fn;
