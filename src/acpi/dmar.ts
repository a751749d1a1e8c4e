/**
 * Builds an ACPI DMAR table (VT-d §8) with one DRHD for one remapping unit. The unit lists its
 * devices as PCI endpoint scopes rather than INCLUDE_PCI_ALL: on v86 only the project's own
 * devices call the IOMMU, so guests must leave the built-in ones (IDE, virtio, ...) untranslated.
 * With interrupt remapping the I/O APIC is listed too (a type 3 scope, as QEMU's q35 lists it):
 * Linux enables remapping only when every I/O APIC is under some unit (§8.3.1.1).
 */
import {
  DeviceScope,
  DeviceScopeType,
  DMAR_MIN_HOST_ADDRESS_WIDTH_FIELD,
  DMAR_REVISION,
  DMAR_SIGNATURE,
  DmarTable,
  Drhd,
  RemappingStructure,
  RemappingStructureType,
} from "../spec/dmar.ts";
import { finishTable, startTable } from "./acpi-table.ts";

/** A PCI endpoint directly on `bus` (a root-complex integrated device: source-id bus << 8 | dev << 3 | fn). */
export interface PciEndpoint {
  bus: number;
  dev: number;
  fn: number;
}

/** An I/O APIC behind the unit (interrupt remapping): its MADT id and its source-id's bus:device.function. */
export interface IoApicScope extends PciEndpoint {
  ioApicId: number;
}

export interface DmarOptions {
  /** Maximum DMA physical address width in bits (the unit's MGAW: CAP.MGAW + 1). */
  hostAddressWidth: number;
  /** Guest-physical address of the unit's register page (4 KiB aligned). */
  unitBase: bigint | number;
  /** The endpoints behind the unit. */
  deviceScopes: PciEndpoint[];
  /** I/O APICs whose interrupts the unit remaps (type 3 scopes, after the endpoints). Default none. */
  ioApics?: IoApicScope[];
  /** PCI segment of the unit. Default 0. */
  segment?: number;
  /** DMAR flags (DmarFlags). Default 0: no interrupt remapping. */
  flags?: number;
  /** Register set size: 2^N 4 KiB pages. Default 0 (one page). */
  sizePages?: number;
}

const ENDPOINT_SCOPE_LENGTH = DeviceScope.PATH + DeviceScope.PATH_ENTRY_SIZE;

function checkEndpoint(e: PciEndpoint): void {
  const ok = (v: number, max: number) => Number.isInteger(v) && v >= 0 && v <= max;
  if (!ok(e.bus, 255) || !ok(e.dev, 31) || !ok(e.fn, 7)) {
    throw new RangeError(`DMAR device scope ${e.bus}:${e.dev}.${e.fn} is not a PCI bus:device.function`);
  }
}

export function buildDmar(options: DmarOptions): Uint8Array {
  const width = options.hostAddressWidth;
  if (!Number.isInteger(width) || width - 1 < DMAR_MIN_HOST_ADDRESS_WIDTH_FIELD || width > 64) {
    throw new RangeError(`DMAR hostAddressWidth ${width}: expected 12..64 bits`);
  }
  const base = BigInt(options.unitBase);
  if (base < 0n || base % 4096n !== 0n || base >> 64n !== 0n) throw new RangeError(`DMAR unitBase 0x${base.toString(16)}: expected a 4 KiB aligned 64-bit address`);
  options.deviceScopes.forEach(checkEndpoint);
  const ioApics = options.ioApics ?? [];
  for (const ioApic of ioApics) {
    checkEndpoint(ioApic);
    if (!Number.isInteger(ioApic.ioApicId) || ioApic.ioApicId < 0 || ioApic.ioApicId > 255) throw new RangeError(`DMAR I/O APIC id ${ioApic.ioApicId}: expected 0..255`);
  }
  const scopes = [
    ...options.deviceScopes.map((e) => ({ ...e, type: DeviceScopeType.PciEndpoint, id: 0 })),
    ...ioApics.map((e) => ({ ...e, type: DeviceScopeType.IoApic, id: e.ioApicId })),
  ];
  const drhdLength = Drhd.DEVICE_SCOPES + ENDPOINT_SCOPE_LENGTH * scopes.length;
  const { bytes, view } = startTable(DMAR_SIGNATURE, DMAR_REVISION, DmarTable.STRUCTURES + drhdLength);
  bytes[DmarTable.HOST_ADDRESS_WIDTH] = width - 1;
  bytes[DmarTable.FLAGS] = options.flags ?? 0;

  const drhd = DmarTable.STRUCTURES;
  view.setUint16(drhd + RemappingStructure.TYPE, RemappingStructureType.Drhd, true);
  view.setUint16(drhd + RemappingStructure.LENGTH, drhdLength, true);
  bytes[drhd + Drhd.FLAGS] = 0; // never INCLUDE_PCI_ALL: the scopes are listed
  bytes[drhd + Drhd.SIZE] = (options.sizePages ?? 0) & 0xf;
  view.setUint16(drhd + Drhd.SEGMENT, options.segment ?? 0, true);
  view.setBigUint64(drhd + Drhd.REGISTER_BASE, base, true);

  let scope = drhd + Drhd.DEVICE_SCOPES;
  for (const endpoint of scopes) {
    bytes[scope + DeviceScope.TYPE] = endpoint.type;
    bytes[scope + DeviceScope.LENGTH] = ENDPOINT_SCOPE_LENGTH;
    bytes[scope + DeviceScope.ENUMERATION_ID] = endpoint.id;
    bytes[scope + DeviceScope.START_BUS] = endpoint.bus;
    bytes[scope + DeviceScope.PATH] = endpoint.dev;
    bytes[scope + DeviceScope.PATH + 1] = endpoint.fn;
    scope += ENDPOINT_SCOPE_LENGTH;
  }
  return finishTable(bytes);
}
