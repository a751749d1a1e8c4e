/**
 * Handing the guest its ACPI tables on v86, which builds none itself.
 * - Without a BIOS: the RSDP/RSDT/tables image is written to 0xE0000 before the guest runs, and
 *   that area is marked reserved in the multiboot memory map.
 * - With SeaBIOS: fw_cfg item 0x8000 is served on ports 0x510/0x511, which v86 answers but
 *   without that item; SeaBIOS then adds the tables to the RSDT it builds.
 */
import { encodeFwCfgAcpiTables, FW_CFG_ACPI_TABLES } from "../acpi/fw-cfg-tables.ts";
import { layoutAcpiTables, RSDP_SEARCH_END, RSDP_SEARCH_START, type AcpiImage } from "../acpi/root-tables.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import type { V86Cpu } from "./internals.ts";
import { readMemoryMap, reserveRange, writeMemoryMap } from "./multiboot.ts";

export const FW_CFG_PORT_SELECTOR = 0x510;

export function installAcpiTablesInRam(memory: GuestMemory, tables: Uint8Array[], multibootInfoAddress?: number): AcpiImage {
  const image = layoutAcpiTables(tables, RSDP_SEARCH_START);
  if (!memory.write(BigInt(image.base), image.bytes)) throw new Error("ACPI tables: RAM too small for 0xE0000-0xFFFFF");
  if (multibootInfoAddress !== undefined) {
    const map = readMemoryMap(memory, multibootInfoAddress);
    if (map.length > 0) writeMemoryMap(memory, multibootInfoAddress, reserveRange(map, RSDP_SEARCH_START, RSDP_SEARCH_END));
  }
  return image;
}

/** Serves fw_cfg item 0x8000 (extra ACPI tables) by wrapping v86's selector port. */
export function serveFwCfgAcpiTables(cpu: V86Cpu, tables: Uint8Array[]): void {
  const payload = encodeFwCfgAcpiTables(tables);
  const entry = cpu.io.ports[FW_CFG_PORT_SELECTOR];
  if (!entry) throw new Error("v86: no fw_cfg selector port 0x510");
  const original = entry.write16;
  entry.write16 = function (this: unknown, value: number) {
    if ((value & 0xffff) === FW_CFG_ACPI_TABLES) {
      cpu.fw_value = payload;
      cpu.fw_pointer = 0;
    } else {
      original.call(this, value);
    }
  };
}
