/**
 * QEMU's legacy fw_cfg item 0x8000 ("extra ACPI tables"), which SeaBIOS adds to the tables it
 * builds itself: a u16 count, then for each table a u16 length and its bytes (little-endian).
 */
export const FW_CFG_ACPI_TABLES = 0x8000;

export function encodeFwCfgAcpiTables(tables: Uint8Array[]): Uint8Array {
  const size = 2 + tables.reduce((n, t) => n + 2 + t.length, 0);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, tables.length, true);
  let at = 2;
  for (const table of tables) {
    if (table.length > 0xffff) throw new RangeError("fw_cfg ACPI table longer than 65535 bytes");
    view.setUint16(at, table.length, true);
    bytes.set(table, at + 2);
    at += 2 + table.length;
  }
  return bytes;
}
