/**
 * Lays out a set of ACPI tables for a guest without a BIOS: an ACPI 1.0 RSDP (ACPI 6.5 §5.2.5,
 * found by scanning 0xE0000-0xFFFFF on 16-byte boundaries), an RSDT (§5.2.7) pointing at each
 * table, then the tables, all in one image to copy to guest-physical `base`.
 */
import { ACPI_HEADER_SIZE, byteSum, finishTable, fixChecksum, OEM_ID, startTable } from "./acpi-table.ts";

export const RSDP_SIGNATURE = "RSD PTR ";
export const Rsdp = {
  SIGNATURE: 0,
  CHECKSUM: 8,
  OEM_ID: 9,
  REVISION: 15,
  RSDT_ADDRESS: 16,
  /** ACPI 1.0 RSDP length; its checksum covers these 20 bytes. */
  LENGTH: 20,
} as const;
export const RSDP_SEARCH_START = 0xe_0000;
export const RSDP_SEARCH_END = 0x10_0000;
export const RSDT_SIGNATURE = "RSDT";

const ALIGN = 16;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

export function buildRsdp(rsdtAddress: number): Uint8Array {
  const bytes = new Uint8Array(Rsdp.LENGTH);
  for (let i = 0; i < 8; i++) bytes[Rsdp.SIGNATURE + i] = RSDP_SIGNATURE.charCodeAt(i);
  for (let i = 0; i < 6; i++) bytes[Rsdp.OEM_ID + i] = OEM_ID.charCodeAt(i);
  bytes[Rsdp.REVISION] = 0;
  new DataView(bytes.buffer).setUint32(Rsdp.RSDT_ADDRESS, rsdtAddress, true);
  fixChecksum(bytes, Rsdp.CHECKSUM);
  return bytes;
}

export function buildRsdt(tableAddresses: number[]): Uint8Array {
  const { bytes, view } = startTable(RSDT_SIGNATURE, 1, ACPI_HEADER_SIZE + 4 * tableAddresses.length);
  tableAddresses.forEach((address, i) => view.setUint32(ACPI_HEADER_SIZE + 4 * i, address, true));
  return finishTable(bytes);
}

export interface AcpiImage {
  /** Guest-physical address of the image (and of the RSDP at its start). */
  base: number;
  bytes: Uint8Array;
  rsdpAddress: number;
  rsdtAddress: number;
  /** Address of each table, in the order given. */
  tableAddresses: number[];
}

/** RSDP, RSDT and `tables` laid out from `base` (16-byte aligned, inside the RSDP search area). */
export function layoutAcpiTables(tables: Uint8Array[], base = RSDP_SEARCH_START): AcpiImage {
  if (base % ALIGN !== 0 || base < RSDP_SEARCH_START || base >= RSDP_SEARCH_END) {
    throw new RangeError(`ACPI base 0x${base.toString(16)} must be 16-byte aligned in 0xE0000-0xFFFFF`);
  }
  const rsdtAddress = base + align(Rsdp.LENGTH);
  let next = rsdtAddress + align(ACPI_HEADER_SIZE + 4 * tables.length);
  const tableAddresses = tables.map((table) => {
    const address = next;
    next += align(table.length);
    return address;
  });
  const bytes = new Uint8Array(next - base);
  bytes.set(buildRsdp(rsdtAddress), 0);
  bytes.set(buildRsdt(tableAddresses), rsdtAddress - base);
  tables.forEach((table, i) => {
    if (byteSum(table) !== 0) throw new Error(`ACPI table ${i} has a bad checksum`);
    bytes.set(table, tableAddresses[i]! - base);
  });
  if (next > RSDP_SEARCH_END) throw new RangeError("ACPI tables do not fit below 1 MiB");
  return { base, bytes, rsdpAddress: base, rsdtAddress, tableAddresses };
}
