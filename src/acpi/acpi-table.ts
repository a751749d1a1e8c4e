/**
 * The common header of ACPI system description tables (ACPI 6.5 §5.2.6) and the checksum rule:
 * all bytes of a table sum to zero mod 256. Platform-neutral.
 */
export const ACPI_HEADER_SIZE = 36;
export const AcpiHeader = {
  SIGNATURE: 0,
  LENGTH: 4,
  REVISION: 8,
  CHECKSUM: 9,
  OEM_ID: 10,
  OEM_TABLE_ID: 16,
  OEM_REVISION: 24,
  CREATOR_ID: 28,
  CREATOR_REVISION: 32,
} as const;

/** Identification written into every table this project builds. */
export const OEM_ID = "V86VTD";
export const OEM_TABLE_ID = "V86VTD  ";
export const CREATOR_ID = "V86V";

function writeAscii(bytes: Uint8Array, at: number, text: string, length: number): void {
  for (let i = 0; i < length; i++) bytes[at + i] = i < text.length ? text.charCodeAt(i) & 0x7f : 0x20;
}

/** Sum of the bytes mod 256. */
export function byteSum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

/** Sets `bytes[at]` so that the bytes sum to zero. */
export function fixChecksum(bytes: Uint8Array, at: number): void {
  bytes[at] = 0;
  bytes[at] = (0x100 - byteSum(bytes)) & 0xff;
}

/** A table of `length` bytes with its header filled in except the checksum (see `finishTable`). */
export function startTable(signature: string, revision: number, length: number): { bytes: Uint8Array; view: DataView } {
  if (signature.length !== 4) throw new RangeError(`ACPI signature must be 4 characters: ${signature}`);
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  writeAscii(bytes, AcpiHeader.SIGNATURE, signature, 4);
  view.setUint32(AcpiHeader.LENGTH, length, true);
  bytes[AcpiHeader.REVISION] = revision;
  writeAscii(bytes, AcpiHeader.OEM_ID, OEM_ID, 6);
  writeAscii(bytes, AcpiHeader.OEM_TABLE_ID, OEM_TABLE_ID, 8);
  view.setUint32(AcpiHeader.OEM_REVISION, 1, true);
  writeAscii(bytes, AcpiHeader.CREATOR_ID, CREATOR_ID, 4);
  view.setUint32(AcpiHeader.CREATOR_REVISION, 1, true);
  return { bytes, view };
}

export function finishTable(bytes: Uint8Array): Uint8Array {
  fixChecksum(bytes, AcpiHeader.CHECKSUM);
  return bytes;
}

/** The 4-character signature of a table. */
export function tableSignature(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes.subarray(0, 4));
}
