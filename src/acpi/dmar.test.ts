import { describe, expect, it } from "vitest";
import { DeviceScope, DeviceScopeType, DmarTable, Drhd, RemappingStructure, RemappingStructureType } from "../spec/dmar.ts";
import { AcpiHeader, byteSum, tableSignature } from "./acpi-table.ts";
import { buildDmar } from "./dmar.ts";

/** An independent decoder of what buildDmar wrote (VT-d §8). */
function decodeDmar(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const units: { flags: number; size: number; segment: number; base: bigint; scopes: { type: number; length: number; enumerationId: number; bus: number; path: [number, number][] }[] }[] = [];
  for (let at = DmarTable.STRUCTURES; at < bytes.length; ) {
    const type = view.getUint16(at + RemappingStructure.TYPE, true);
    const length = view.getUint16(at + RemappingStructure.LENGTH, true);
    if (type === RemappingStructureType.Drhd) {
      const scopes = [];
      for (let s = at + Drhd.DEVICE_SCOPES; s < at + length; ) {
        const scopeLength = bytes[s + DeviceScope.LENGTH]!;
        const path: [number, number][] = [];
        for (let p = s + DeviceScope.PATH; p < s + scopeLength; p += 2) path.push([bytes[p]!, bytes[p + 1]!]);
        scopes.push({ type: bytes[s]!, length: scopeLength, enumerationId: bytes[s + DeviceScope.ENUMERATION_ID]!, bus: bytes[s + DeviceScope.START_BUS]!, path });
        s += scopeLength;
      }
      units.push({ flags: bytes[at + Drhd.FLAGS]!, size: bytes[at + Drhd.SIZE]!, segment: view.getUint16(at + Drhd.SEGMENT, true), base: view.getBigUint64(at + Drhd.REGISTER_BASE, true), scopes });
    }
    at += length;
  }
  return {
    signature: tableSignature(bytes),
    length: view.getUint32(AcpiHeader.LENGTH, true),
    revision: bytes[AcpiHeader.REVISION],
    checksumOk: byteSum(bytes) === 0,
    hostAddressWidth: bytes[DmarTable.HOST_ADDRESS_WIDTH]! + 1,
    flags: bytes[DmarTable.FLAGS],
    units,
  };
}

describe("buildDmar", () => {
  it("writes one DRHD with endpoint scopes, and a valid header and checksum", () => {
    const bytes = buildDmar({ hostAddressWidth: 39, unitBase: 0xfed9_0000, deviceScopes: [{ bus: 0, dev: 4, fn: 0 }, { bus: 0, dev: 6, fn: 1 }] });
    expect(bytes.length).toBe(48 + 16 + 2 * 8);
    expect(decodeDmar(bytes)).toEqual({
      signature: "DMAR",
      length: bytes.length,
      revision: 1,
      checksumOk: true,
      hostAddressWidth: 39,
      flags: 0,
      units: [
        {
          flags: 0, // not INCLUDE_PCI_ALL: v86's own devices are not behind the unit
          size: 0,
          segment: 0,
          base: 0xfed9_0000n,
          scopes: [
            { type: DeviceScopeType.PciEndpoint, length: 8, enumerationId: 0, bus: 0, path: [[4, 0]] },
            { type: DeviceScopeType.PciEndpoint, length: 8, enumerationId: 0, bus: 0, path: [[6, 1]] },
          ],
        },
      ],
    });
  });

  it("lists I/O APICs as type 3 scopes after the endpoints, with their id and source-id, and the INTR_REMAP flag", () => {
    const bytes = buildDmar({
      hostAddressWidth: 48, unitBase: 0xfed9_0000, flags: 1,
      deviceScopes: [{ bus: 0, dev: 4, fn: 0 }], ioApics: [{ ioApicId: 0, bus: 0xff, dev: 0, fn: 0 }],
    });
    const decoded = decodeDmar(bytes);
    expect(decoded.checksumOk).toBe(true);
    expect(decoded.flags).toBe(1);
    expect(decoded.units[0]!.scopes).toEqual([
      { type: DeviceScopeType.PciEndpoint, length: 8, enumerationId: 0, bus: 0, path: [[4, 0]] },
      { type: DeviceScopeType.IoApic, length: 8, enumerationId: 0, bus: 0xff, path: [[0, 0]] },
    ]);
    expect(() => buildDmar({ hostAddressWidth: 48, unitBase: 0, deviceScopes: [], ioApics: [{ ioApicId: 256, bus: 0xff, dev: 0, fn: 0 }] })).toThrow(/I\/O APIC id 256/);
  });

  it("stores HAW - 1 (QEMU: 38 for 39 bits, 47 for 48)", () => {
    expect(buildDmar({ hostAddressWidth: 48, unitBase: 0xfed9_0000n, deviceScopes: [] })[DmarTable.HOST_ADDRESS_WIDTH]).toBe(47);
  });

  it("refuses widths, bases and endpoints it cannot encode", () => {
    expect(() => buildDmar({ hostAddressWidth: 11, unitBase: 0, deviceScopes: [] })).toThrow(/hostAddressWidth/);
    expect(() => buildDmar({ hostAddressWidth: 39, unitBase: 0xfed9_0010, deviceScopes: [] })).toThrow(/unitBase/);
    expect(() => buildDmar({ hostAddressWidth: 39, unitBase: 0, deviceScopes: [{ bus: 0, dev: 32, fn: 0 }] })).toThrow(/0:32.0/);
  });
});
