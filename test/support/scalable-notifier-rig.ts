/**
 * For the scalable-mode notifier and nested-model tests: a CM = 1 unit offering first and second
 * stage with a 256-bit invalidation queue, descriptor builders (VT-d 5.10 §6.5.2, written from
 * the spec's layouts), and an independent reference walk of what a requester id and PASID reach
 * (§9.2, §9.4-§9.8: scalable root, context, PASID directory and table, then second-stage or
 * IA-32e first-stage tables), with no code of the unit or its notifiers. The reference assumes
 * well-formed tables (no reserved-bit checks) and user requests (U/S must be set at every level).
 */
import { GuestRam, VtdDevice } from "../../src/vtd-device/index.ts";
import { Gcmd, GSTS_PERSISTENT_MASK, Reg } from "../../src/spec/index.ts";
import { ScalableTables } from "./scalable-tables.ts";
import type { ReferenceMapping } from "./reference-mappings.ts";

export type Wide = readonly bigint[];
const QUEUE = 0x40_0000, QUEUE_SLOTS = 128;

/** 256-bit descriptors: qwords 0 and 1 (bits 255:128 zero). */
export const wide = {
  contextGlobal: (): Wide => [1n | (1n << 4n)],
  contextDevice: (sid: number): Wide => [1n | (3n << 4n) | (BigInt(sid) << 32n)],
  iotlbGlobal: (): Wide => [2n | (1n << 4n)],
  iotlbDomain: (did: number): Wide => [2n | (2n << 4n) | (BigInt(did) << 16n)],
  iotlbPage: (did: number, address: number, am = 0): Wide => [2n | (3n << 4n) | (BigInt(did) << 16n), BigInt(address) | BigInt(am)],
  deviceTlb: (sid: number, address: number): Wide => [3n | (BigInt(sid) << 32n), BigInt(address)],
  /** PASID-cache: granularity 0 domain, 1 PASID in domain, 3 all. */
  pasidCache: (g: number, did: number, pasid = 0): Wide => [7n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n)],
  /** PASID-based IOTLB of a whole PASID (granularity 10). */
  pasidIotlbAll: (did: number, pasid: number): Wide => [6n | (2n << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n)],
  /** PASID-based IOTLB of 2^am pages at `address` (granularity 11), IH as given. */
  pasidIotlbPage: (did: number, pasid: number, address: number, am = 0, ih = false): Wide =>
    [6n | (3n << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n), BigInt(address) | (ih ? 1n << 6n : 0n) | BigInt(am)],
};

export interface ScalableRig {
  ram: GuestRam;
  device: VtdDevice;
  tables: ScalableTables;
  /** Writes the descriptors at the tail and moves it past them (the unit executes them at once). */
  submit(...descriptors: Wide[]): void;
}

export function scalableRig(options: Partial<ConstructorParameters<typeof VtdDevice>[0]> = {}, ramBytes = 64 << 20): ScalableRig {
  const ram = new GuestRam(ramBytes);
  const device = new VtdDevice({ memory: ram, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 20, cachingMode: true, awBits: 48, ...options });
  const tables = new ScalableTables(ram);
  let tail = 0;
  device.writeRegister(Reg.IQT, 8, 0n);
  device.writeRegister(Reg.IQA, 8, BigInt(QUEUE) | (1n << 11n)); // DW = 1, QS = 0: one 4 KiB page, 128 slots of 32 bytes
  device.writeRegister(Reg.GCMD, 4, (device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK) | Gcmd.QIE);
  const submit = (...descriptors: Wide[]) => {
    for (const d of descriptors) {
      for (let q = 0; q < 4; q++) ram.write64(QUEUE + tail * 32 + q * 8, d[q] ?? 0n);
      tail = (tail + 1) % QUEUE_SLOTS;
    }
    device.writeRegister(Reg.IQT, 8, BigInt(tail * 32));
  };
  return { ram, device, tables, submit };
}

/** RTADDR with TTM = 01, SRTP, TE, then a global context-cache invalidation through the queue. */
export function enableScalableQueued(rig: ScalableRig): void {
  rig.device.writeRegister(Reg.RTADDR, 8, BigInt(rig.tables.root) | (1n << 10n));
  rig.device.writeRegister(Reg.GCMD, 4, (rig.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK) | Gcmd.SRTP);
  rig.device.writeRegister(Reg.GCMD, 4, (rig.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK) | Gcmd.TE);
  rig.submit(wide.contextGlobal(), wide.pasidCache(3, 0), wide.iotlbGlobal());
}

const TWO_32 = 2 ** 32;
const addressOf = (lo: number, hi: number) => (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);

export interface ReferenceView {
  /** "none" (no usable entry), or the PASID entry's PGTT. */
  kind: "none" | "first-stage" | "second-stage" | "pass-through";
  mappings: ReferenceMapping[];
}

/** What requests of `sid` (with `pasid`, or -1 for none: RID_PASID) reach through the tables in `ram` now. */
export function referenceView(ram: GuestRam, rootTable: number, sid: number, pasid: number): ReferenceView {
  const none: ReferenceView = { kind: "none", mappings: [] };
  const devfn = sid & 0xff;
  const rootAt = rootTable + (sid >> 8) * 16 + (devfn >= 0x80 ? 8 : 0);
  const r0 = ram.read32(rootAt), r1 = ram.read32(rootAt + 4);
  if ((r0 & 1) === 0) return none;
  const ctx = addressOf(r0, r1) + (devfn & 0x7f) * 32;
  const c0 = ram.read32(ctx), c1 = ram.read32(ctx + 4), c2 = ram.read32(ctx + 8);
  if ((c0 & 1) === 0) return none;
  let used = pasid;
  if (pasid < 0) used = c2 & 0xf_ffff;
  else if ((c0 & 8) === 0) return none;
  const dirEntries = 2 ** (((c0 >>> 9) & 7) + 7);
  if (used >>> 6 >= dirEntries) return none;
  const dirAt = addressOf(c0, c1) + (used >>> 6) * 8;
  const d0 = ram.read32(dirAt), d1 = ram.read32(dirAt + 4);
  if ((d0 & 1) === 0) return none;
  const pe = addressOf(d0, d1) + (used & 0x3f) * 64;
  const p0 = ram.read32(pe), p1 = ram.read32(pe + 4), p4 = ram.read32(pe + 16), p5 = ram.read32(pe + 20);
  if ((p0 & 1) === 0) return none;
  const pgtt = (p0 >>> 6) & 7;
  if (pgtt === 4) return { kind: "pass-through", mappings: [] };
  const out: ReferenceMapping[] = [];
  if (pgtt === 2) {
    const levels = ((p0 >>> 2) & 7) + 2;
    const walk = (table: number, level: number, base: number, permission: number) => {
      const size = 2 ** (12 + 9 * (level - 1));
      for (let i = 0; i < 512; i++) {
        const lo = ram.read32(table + i * 8), hi = ram.read32(table + i * 8 + 4);
        const p = permission & lo & 3;
        if (p === 0) continue;
        const leaf = level === 1 || ((lo & 0x80) !== 0 && level <= 3);
        const a = addressOf(lo, hi);
        if (leaf) out.push({ iova: base + i * size, size, output: a - (a % size), permission: p });
        else walk(a, level - 1, base + i * size, p);
      }
    };
    walk(addressOf(p0, p1), levels, 0, 3);
    return { kind: "second-stage", mappings: out };
  }
  if (pgtt === 1) {
    // IA-32e: P (bit 0), R/W (1) and U/S (2) at every level, PS (7) at levels 2 and 3.
    const walk = (table: number, level: number, base: number, writable: boolean) => {
      const size = 2 ** (12 + 9 * (level - 1));
      for (let i = 0; i < 512; i++) {
        const lo = ram.read32(table + i * 8), hi = ram.read32(table + i * 8 + 4);
        if ((lo & 1) === 0 || (lo & 4) === 0) continue;
        const w = writable && (lo & 2) !== 0;
        const a = addressOf(lo, hi);
        const leaf = level === 1 || ((lo & 0x80) !== 0 && level <= 3);
        if (leaf) out.push({ iova: base + i * size, size, output: a - (a % size), permission: w ? 3 : 1 });
        else walk(a, level - 1, base + i * size, w);
      }
    };
    walk(addressOf(p4, p5), 4, 0, true);
    return { kind: "first-stage", mappings: out };
  }
  return none;
}
