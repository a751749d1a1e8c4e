/**
 * A Multiple APIC Description Table (ACPI 6.5 §5.2.12) for one CPU with one local APIC and one
 * IOAPIC, which is what a guest without a BIOS needs to find its interrupt controllers.
 */
import { IOAPIC_BASE, IOAPIC_ID, LOCAL_APIC_BASE } from "../spec/platform.ts";
import { finishTable, startTable, ACPI_HEADER_SIZE } from "./acpi-table.ts";

export const MADT_SIGNATURE = "APIC";
export const MADT_REVISION = 1;
export const Madt = {
  LOCAL_APIC_ADDRESS: ACPI_HEADER_SIZE,
  FLAGS: ACPI_HEADER_SIZE + 4,
  ENTRIES: ACPI_HEADER_SIZE + 8,
} as const;
/** The system also has dual 8259 PICs. */
export const MADT_PCAT_COMPAT = 1;
export enum MadtEntryType {
  ProcessorLocalApic = 0,
  IoApic = 1,
}
const LOCAL_APIC_ENTRY_LENGTH = 8;
const IOAPIC_ENTRY_LENGTH = 12;
const LOCAL_APIC_ENABLED = 1;

export interface MadtOptions {
  localApicAddress?: number;
  localApicId?: number;
  ioApicAddress?: number;
  ioApicId?: number;
  ioApicGsiBase?: number;
}

export function buildMadt(options: MadtOptions = {}): Uint8Array {
  const length = Madt.ENTRIES + LOCAL_APIC_ENTRY_LENGTH + IOAPIC_ENTRY_LENGTH;
  const { bytes, view } = startTable(MADT_SIGNATURE, MADT_REVISION, length);
  view.setUint32(Madt.LOCAL_APIC_ADDRESS, options.localApicAddress ?? LOCAL_APIC_BASE, true);
  view.setUint32(Madt.FLAGS, MADT_PCAT_COMPAT, true);
  let at = Madt.ENTRIES;
  bytes[at] = MadtEntryType.ProcessorLocalApic;
  bytes[at + 1] = LOCAL_APIC_ENTRY_LENGTH;
  bytes[at + 2] = 0; // ACPI processor uid
  bytes[at + 3] = options.localApicId ?? 0;
  view.setUint32(at + 4, LOCAL_APIC_ENABLED, true);
  at += LOCAL_APIC_ENTRY_LENGTH;
  bytes[at] = MadtEntryType.IoApic;
  bytes[at + 1] = IOAPIC_ENTRY_LENGTH;
  bytes[at + 2] = options.ioApicId ?? IOAPIC_ID;
  view.setUint32(at + 4, options.ioApicAddress ?? IOAPIC_BASE, true);
  view.setUint32(at + 8, options.ioApicGsiBase ?? 0, true);
  return finishTable(bytes);
}
