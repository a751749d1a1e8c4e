/**
 * Finding an ACPI table the way a BIOS-less guest does (ACPI 6.5 §5.2.5): scan 0xE0000-0xFFFFF on
 * 16-byte boundaries for an RSDP with a valid checksum, follow its RSDT, and return the first
 * table with the signature and a valid checksum. Reads through the CPU's view of memory, so on
 * v86 it finds what the platform really put in the guest's RAM.
 */
import { ACPI_HEADER_SIZE, AcpiHeader, byteSum } from "../acpi/acpi-table.ts";
import { Rsdp, RSDP_SEARCH_END, RSDP_SEARCH_START, RSDP_SIGNATURE, RSDT_SIGNATURE } from "../acpi/root-tables.ts";
import type { PhysicalMemory } from "./platform.ts";

const RSDP_ALIGN = 16;
/** No table this project builds is larger; a longer length is taken as garbage. */
const MAX_TABLE_BYTES = 64 * 1024;
/** The RSDP signature's first four bytes as a little-endian dword: a cheap first test. */
const RSDP_FIRST_DWORD = [0, 1, 2, 3].reduce((word, i) => word | (RSDP_SIGNATURE.charCodeAt(i) << (8 * i)), 0) >>> 0;

function ascii(bytes: Uint8Array, at: number, length: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + length));
}

function table(memory: PhysicalMemory, address: number, ramBytes: number): Uint8Array | undefined {
  if (address < 0 || address + ACPI_HEADER_SIZE > ramBytes) return undefined;
  const length = memory.read32(address + AcpiHeader.LENGTH);
  if (length < ACPI_HEADER_SIZE || length > MAX_TABLE_BYTES || address + length > ramBytes) return undefined;
  const bytes = memory.readBytes(address, length);
  return byteSum(bytes) === 0 ? bytes : undefined;
}

/** The table with `signature` (e.g. "DMAR") reachable from an RSDP in RAM, or undefined. */
export function findAcpiTable(memory: PhysicalMemory, ramBytes: number, signature: string): Uint8Array | undefined {
  for (let at = RSDP_SEARCH_START; at < RSDP_SEARCH_END; at += RSDP_ALIGN) {
    if (memory.read32(at) !== RSDP_FIRST_DWORD) continue;
    const rsdp = memory.readBytes(at, Rsdp.LENGTH);
    if (ascii(rsdp, Rsdp.SIGNATURE, 8) !== RSDP_SIGNATURE || byteSum(rsdp) !== 0) continue;
    const rsdt = table(memory, new DataView(rsdp.buffer).getUint32(Rsdp.RSDT_ADDRESS, true), ramBytes);
    if (!rsdt || ascii(rsdt, AcpiHeader.SIGNATURE, 4) !== RSDT_SIGNATURE) continue;
    const view = new DataView(rsdt.buffer);
    for (let entry = ACPI_HEADER_SIZE; entry + 4 <= rsdt.length; entry += 4) {
      const found = table(memory, view.getUint32(entry, true), ramBytes);
      if (found && ascii(found, AcpiHeader.SIGNATURE, 4) === signature) return found;
    }
  }
  return undefined;
}
