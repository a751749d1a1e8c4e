/**
 * Helpers for the notifier tests (src/vtd-device/notifiers/*.test.ts): a CM = 1 unit with one
 * translated requester id, register-based invalidations, and a notifier that collects events.
 */
import { Reg } from "../../src/spec/registers.ts";
import { NotifierFlag, type IommuEvent, type IommuNotifier } from "../../src/vtd-device/notifiers/notifier-types.ts";
import { enableTranslation, machine, R, W, type Machine } from "./tables.ts";

export const { MAP, UNMAP, DEVIOTLB_UNMAP } = NotifierFlag;
export const SID = 0x20, OTHER = 0x28;
const IVA = 0xf0, IOTLB = 0xf8;
export const K4 = 0x1000, M2 = 2 ** 21, G1 = 2 ** 30, WHOLE = 2 ** 48;

/** Page-selective IOTLB invalidation of 2^am pages at `address` in domain `did`, through IVA/IOTLB. */
export function psi(m: Machine, did: number, address: number, am = 0): void {
  m.device.writeRegister(IVA, 8, BigInt(address) | BigInt(am));
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (3n << 60n) | (BigInt(did) << 32n));
}
export function dsi(m: Machine, did: number): void {
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (2n << 60n) | (BigInt(did) << 32n));
}
export function iotlbGlobal(m: Machine): void {
  m.device.writeRegister(IOTLB, 8, (1n << 63n) | (1n << 60n));
}
export function contextDevice(m: Machine, sid: number): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (3n << 61n) | (BigInt(sid) << 16n));
}
export function contextGlobal(m: Machine): void {
  m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
}

export interface Seen { type: number; iova: number; translatedAddress: number; addressMask: number; permission: number }
export function collector(): { notify: IommuNotifier; seen: Seen[]; take(): Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    notify: (e: IommuEvent) => seen.push({ type: e.type, iova: e.iova, translatedAddress: e.translatedAddress, addressMask: e.addressMask, permission: e.permission }),
    take: () => seen.splice(0),
  };
}
export const mapEvent = (iova: number, out: number, size: number, permission = 3): Seen => ({ type: MAP, iova, translatedAddress: out, addressMask: size - 1, permission });
export const unmapEvent = (iova: number, out: number, size: number): Seen => ({ type: UNMAP, iova, translatedAddress: out, addressMask: size - 1, permission: 0 });
export const UNMAP_ALL: Seen = unmapEvent(0, 0, WHOLE);

/** A CM = 1 unit, 48-bit, SID in domain 1 with 4-level tables, translation on. */
export function unit(options: Parameters<typeof machine>[0] = {}) {
  const m = machine({ awBits: 48, cachingMode: true, ...options });
  const root = m.tables.context(SID, { did: 1, aw: 2 });
  enableTranslation(m);
  return { m, root, space: m.device.notifiers.addressSpace(SID), stats: m.device.notifiers.stats };
}

/** Every entry of `table` points to `next` (a table, or the output page at level 1) with R and W. */
export function fillTable(m: Machine, table: number, next: number): void {
  for (let i = 0; i < 512; i++) m.ram.write64(table + i * 8, BigInt(next) | R | W);
}

/** Every entry of levels 4..2 points at the same next table; the last table holds 512 4K leaves. */
export function aliasEverything(m: Machine, root: number): void {
  const l3 = m.tables.page(), l2 = m.tables.page(), l1 = m.tables.page();
  fillTable(m, root, l3);
  fillTable(m, l3, l2);
  fillTable(m, l2, l1);
  for (let i = 0; i < 512; i++) m.ram.write64(l1 + i * 8, BigInt(0x20_0000 + (i % 16) * K4) | R | W);
}
