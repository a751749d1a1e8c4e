import { describe, expect, it } from "vitest";
import { ACPI_HEADER_SIZE, byteSum, tableSignature } from "./acpi-table.ts";
import { buildDmar } from "./dmar.ts";
import { encodeFwCfgAcpiTables } from "./fw-cfg-tables.ts";
import { buildMadt, Madt, MadtEntryType } from "./madt.ts";
import { layoutAcpiTables, Rsdp } from "./root-tables.ts";

describe("ACPI tables for a BIOS-less guest", () => {
  const madt = buildMadt();
  const dmar = buildDmar({ hostAddressWidth: 39, unitBase: 0xfed9_0000, deviceScopes: [{ bus: 0, dev: 4, fn: 0 }] });
  const image = layoutAcpiTables([madt, dmar]);
  const view = new DataView(image.bytes.buffer);
  const at = (address: number) => address - image.base;

  it("puts a checksummed ACPI 1.0 RSDP at 0xE0000 pointing at the RSDT", () => {
    expect(image.rsdpAddress).toBe(0xe_0000);
    const rsdp = image.bytes.subarray(0, Rsdp.LENGTH);
    expect(String.fromCharCode(...rsdp.subarray(0, 8))).toBe("RSD PTR ");
    expect(byteSum(rsdp)).toBe(0);
    expect(rsdp[Rsdp.REVISION]).toBe(0);
    expect(view.getUint32(Rsdp.RSDT_ADDRESS, true)).toBe(image.rsdtAddress);
  });

  it("lists every table in the RSDT at 16-byte aligned addresses, each intact", () => {
    const rsdt = image.bytes.subarray(at(image.rsdtAddress), at(image.rsdtAddress) + ACPI_HEADER_SIZE + 8);
    expect(tableSignature(rsdt)).toBe("RSDT");
    expect(byteSum(rsdt)).toBe(0);
    const addresses = [0, 1].map((i) => view.getUint32(at(image.rsdtAddress) + ACPI_HEADER_SIZE + 4 * i, true));
    expect(addresses).toEqual(image.tableAddresses);
    for (const [i, table] of [madt, dmar].entries()) {
      expect(addresses[i]! % 16).toBe(0);
      expect(image.bytes.subarray(at(addresses[i]!), at(addresses[i]!) + table.length)).toEqual(table);
    }
  });

  it("describes one enabled local APIC and the IOAPIC in the MADT", () => {
    const m = new DataView(madt.buffer);
    expect(tableSignature(madt)).toBe("APIC");
    expect(byteSum(madt)).toBe(0);
    expect(m.getUint32(Madt.LOCAL_APIC_ADDRESS, true)).toBe(0xfee0_0000);
    expect(madt[Madt.ENTRIES]).toBe(MadtEntryType.ProcessorLocalApic);
    expect(m.getUint32(Madt.ENTRIES + 4, true) & 1).toBe(1);
    expect(madt[Madt.ENTRIES + 8]).toBe(MadtEntryType.IoApic);
    expect(m.getUint32(Madt.ENTRIES + 12, true)).toBe(0xfec0_0000);
  });

  it("refuses a base outside the RSDP search area", () => {
    expect(() => layoutAcpiTables([dmar], 0x9_0000)).toThrow(/0xE0000-0xFFFFF/);
  });

  it("encodes fw_cfg item 0x8000: u16 count, then u16 length and bytes per table", () => {
    const encoded = encodeFwCfgAcpiTables([dmar, madt]);
    const e = new DataView(encoded.buffer);
    expect(e.getUint16(0, true)).toBe(2);
    expect(e.getUint16(2, true)).toBe(dmar.length);
    expect(encoded.subarray(4, 4 + dmar.length)).toEqual(dmar);
    expect(e.getUint16(4 + dmar.length, true)).toBe(madt.length);
    expect(encoded.length).toBe(2 + 2 + dmar.length + 2 + madt.length);
  });
});
