/**
 * Finding the unit: the ACPI DMAR table's DRHD structures (VT-d §8.3), then VER, CAP and ECAP
 * decoded (VT-d §11.4.1-3). A unit reading all-ones, or offering no address width the driver can
 * use (SAGAW), is rejected with an error that says so.
 */
import { DeviceScope, DeviceScopeType, DMAR_SIGNATURE, DmarTable, Drhd, DrhdFlags, RemappingStructure, RemappingStructureType } from "../spec/dmar.ts";
import { getField } from "../spec/field.ts";
import { Cap, Ecap, Reg, SAGAW_39_BIT, SAGAW_48_BIT, SLLPS_1G, SLLPS_2M } from "../spec/registers.ts";
import { hex, VtdDriverError } from "./errors.ts";
import type { Mmio, Platform } from "./platform.ts";

export interface DmarScope {
  type: DeviceScopeType;
  enumerationId: number;
  startBus: number;
  path: { dev: number; fn: number }[];
  /** Source-id of a device directly on the start bus (path of one hop); undefined behind bridges. */
  sid?: number;
}

export interface DmarUnit {
  registerBase: number;
  segment: number;
  includePciAll: boolean;
  /** Register set size in 4 KiB pages. */
  pages: number;
  scopes: DmarScope[];
}

export interface DmarTableInfo {
  hostAddressWidth: number;
  flags: number;
  units: DmarUnit[];
}

/** Parses the DMAR table's header and DRHDs; other remapping structures are skipped by length. */
export function parseDmar(bytes: Uint8Array): DmarTableInfo {
  const fail = (why: string): never => {
    throw new VtdDriverError("no-unit", `DMAR table: ${why}`);
  };
  if (bytes.length < DmarTable.STRUCTURES) fail(`${bytes.length} bytes, shorter than its header`);
  const signature = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  if (signature !== DMAR_SIGNATURE) fail(`signature "${signature}", expected "${DMAR_SIGNATURE}"`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(4, true);
  if (length > bytes.length || length < DmarTable.STRUCTURES) fail(`length field ${length} does not fit the ${bytes.length} bytes given`);
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + bytes[i]!) & 0xff;
  if (sum !== 0) fail(`checksum does not add up (sum ${sum})`);
  const units: DmarUnit[] = [];
  for (let at = DmarTable.STRUCTURES; at + 4 <= length; ) {
    const type = view.getUint16(at + RemappingStructure.TYPE, true);
    const size = view.getUint16(at + RemappingStructure.LENGTH, true);
    if (size < 4 || at + size > length) fail(`remapping structure at byte ${at} has length ${size}`);
    if (type === RemappingStructureType.Drhd) {
      if (size < Drhd.DEVICE_SCOPES) fail(`DRHD at byte ${at} is ${size} bytes, shorter than ${Drhd.DEVICE_SCOPES}`);
      const scopes: DmarScope[] = [];
      for (let s = at + Drhd.DEVICE_SCOPES; s + DeviceScope.PATH <= at + size; ) {
        const scopeLength = bytes[s + DeviceScope.LENGTH]!;
        if (scopeLength < DeviceScope.PATH || s + scopeLength > at + size) fail(`device scope at byte ${s} has length ${scopeLength}`);
        const path: { dev: number; fn: number }[] = [];
        for (let p = s + DeviceScope.PATH; p + 1 < s + scopeLength; p += DeviceScope.PATH_ENTRY_SIZE) path.push({ dev: bytes[p]!, fn: bytes[p + 1]! });
        const startBus = bytes[s + DeviceScope.START_BUS]!;
        const scope: DmarScope = { type: bytes[s + DeviceScope.TYPE]!, enumerationId: bytes[s + DeviceScope.ENUMERATION_ID]!, startBus, path };
        if (path.length === 1) scope.sid = (startBus << 8) | ((path[0]!.dev & 0x1f) << 3) | (path[0]!.fn & 7);
        scopes.push(scope);
        s += scopeLength;
      }
      units.push({
        registerBase: Number(view.getBigUint64(at + Drhd.REGISTER_BASE, true)),
        segment: view.getUint16(at + Drhd.SEGMENT, true),
        includePciAll: (bytes[at + Drhd.FLAGS]! & DrhdFlags.INCLUDE_PCI_ALL) !== 0,
        pages: 2 ** (bytes[at + Drhd.SIZE]! & 0xf),
        scopes,
      });
    }
    at += size;
  }
  if (units.length === 0) fail("no DRHD (no remapping unit)");
  return { hostAddressWidth: bytes[DmarTable.HOST_ADDRESS_WIDTH]! + 1, flags: bytes[DmarTable.FLAGS]!, units };
}

/** CAP and ECAP as the driver uses them. */
export interface UnitCapabilities {
  version: { major: number; minor: number };
  cap: bigint;
  ecap: bigint;
  domainIdBits: number;
  rwbf: boolean;
  protectedLowMemory: boolean;
  protectedHighMemory: boolean;
  cachingMode: boolean;
  /** SAGAW bit mask: bit 1 = 39-bit 3-level, bit 2 = 48-bit 4-level. */
  sagaw: number;
  /** Maximum guest address width in bits (MGAW + 1). */
  mgawBits: number;
  superpage2M: boolean;
  superpage1G: boolean;
  pageSelective: boolean;
  mamv: number;
  faultRecordCount: number;
  faultRecordOffset: number;
  drainRead: boolean;
  drainWrite: boolean;
  esrtps: boolean;
  /** CAP.ESIRTPS: SIRTP invalidates the interrupt entry cache by itself. */
  esirtps: boolean;
  coherent: boolean;
  queuedInvalidation: boolean;
  deviceTlb: boolean;
  passThrough: boolean;
  /** ECAP.IR: interrupt remapping. */
  interruptRemapping: boolean;
  iotlbOffset: number;
  ivaOffset: number;
  /** ECAP.SMTS: scalable mode (RTADDR.TTM = 01, PASID tables, 256-bit descriptors). */
  scalableMode: boolean;
  /** ECAP.FSTS / ECAP.SSTS: first-stage / second-stage translation in scalable mode. */
  firstStage: boolean;
  secondStage: boolean;
  /** CAP.FS1GP (FL1GP): 1 GiB first-stage pages. */
  firstStage1G: boolean;
}

/** The context AW of the widest tables SAGAW offers: 2 (48-bit, 4-level) or 1 (39-bit, 3-level). */
export function widestAw(caps: UnitCapabilities): number {
  return caps.sagaw & SAGAW_48_BIT ? 2 : 1;
}

export function decodeCapabilities(version: number, cap: bigint, ecap: bigint): UnitCapabilities {
  const c = (f: Parameters<typeof getField>[1]) => Number(getField(cap, f));
  const e = (f: Parameters<typeof getField>[1]) => Number(getField(ecap, f));
  const sllps = c(Cap.SLLPS);
  const iro = e(Ecap.IRO);
  return {
    version: { major: (version >> 4) & 0xf, minor: version & 0xf },
    cap,
    ecap,
    domainIdBits: 4 + 2 * c(Cap.ND),
    rwbf: c(Cap.RWBF) === 1,
    protectedLowMemory: c(Cap.PLMR) === 1,
    protectedHighMemory: c(Cap.PHMR) === 1,
    cachingMode: c(Cap.CM) === 1,
    sagaw: c(Cap.SAGAW),
    mgawBits: c(Cap.MGAW) + 1,
    superpage2M: (sllps & SLLPS_2M) !== 0,
    superpage1G: (sllps & SLLPS_1G) !== 0,
    pageSelective: c(Cap.PSI) === 1,
    mamv: c(Cap.MAMV),
    faultRecordCount: c(Cap.NFR) + 1,
    faultRecordOffset: c(Cap.FRO) * 16,
    drainRead: c(Cap.DRD) === 1,
    drainWrite: c(Cap.DWD) === 1,
    esrtps: c(Cap.ESRTPS) === 1,
    esirtps: c(Cap.ESIRTPS) === 1,
    coherent: e(Ecap.C) === 1,
    queuedInvalidation: e(Ecap.QI) === 1,
    deviceTlb: e(Ecap.DT) === 1,
    passThrough: e(Ecap.PT) === 1,
    interruptRemapping: e(Ecap.IR) === 1,
    iotlbOffset: iro * 16 + 8,
    ivaOffset: iro * 16,
    scalableMode: e(Ecap.SMTS) === 1,
    firstStage: e(Ecap.FSTS) === 1,
    secondStage: e(Ecap.SSTS) === 1,
    firstStage1G: c(Cap.FL1GP) === 1,
  };
}

/** Reads and checks the unit at `base`. */
export function probeUnit(mmio: Mmio, base: number): UnitCapabilities {
  const version = mmio.read32(base + Reg.VER) >>> 0;
  const cap = mmio.read64(base + Reg.CAP);
  const ecap = mmio.read64(base + Reg.ECAP);
  const allOnes = 0xffff_ffff_ffff_ffffn;
  if (version === 0xffff_ffff || cap === allOnes || ecap === allOnes) {
    throw new VtdDriverError("unit-rejected", `VT-d unit at ${hex(base)}: registers read all-ones (no unit answers there)`);
  }
  const caps = decodeCapabilities(version, cap, ecap);
  if (caps.sagaw === 0) {
    throw new VtdDriverError("unit-rejected", `VT-d unit at ${hex(base)}: CAP.SAGAW is 0, no supported address width (CAP ${hex(cap)})`);
  }
  if ((caps.sagaw & (SAGAW_39_BIT | SAGAW_48_BIT)) === 0) {
    throw new VtdDriverError("unit-rejected", `VT-d unit at ${hex(base)}: SAGAW ${hex(caps.sagaw)} offers neither 39-bit nor 48-bit tables`);
  }
  if (caps.faultRecordOffset === 0 || caps.ivaOffset === 0) {
    throw new VtdDriverError("unit-rejected", `VT-d unit at ${hex(base)}: CAP.FRO / ECAP.IRO place registers over the fixed ones`);
  }
  return caps;
}

/** Where the driver looks for its unit. */
export interface UnitLocation {
  /** Register base of the unit. Default: the first DRHD of `dmar`, or of the platform's DMAR table. */
  base?: number;
  /** ACPI DMAR table bytes. */
  dmar?: Uint8Array;
}

/**
 * The unit's register base (`base`, else the first DRHD of `dmar` or of the platform's DMAR
 * table) and, unless the DRHD has INCLUDE_PCI_ALL, the source-ids of its device scope.
 */
export function locateUnit(platform: Pick<Platform, "acpiTable">, where: UnitLocation): { base: number; scope: number[] | undefined } {
  let base = where.base;
  let scope: number[] | undefined;
  const dmar = where.dmar ?? (base === undefined ? platform.acpiTable?.("DMAR") : undefined);
  if (dmar) {
    const unit = parseDmar(dmar).units[0]!;
    base ??= unit.registerBase;
    // DMA scope: PCI endpoints and sub-hierarchies; an I/O APIC or HPET scope names an interrupt source only.
    if (!unit.includePciAll) scope = unit.scopes.flatMap((s) => (s.sid === undefined || s.type > DeviceScopeType.PciSubHierarchy ? [] : [s.sid]));
  }
  if (base === undefined) throw new VtdDriverError("no-unit", "no VT-d unit: no register base given and the platform has no DMAR table");
  return { base, scope };
}

export { DeviceScopeType };
