/**
 * The generator's odd corners, as whole steps: register accesses of any offset, size and value
 * (biased towards the registers that matter), and DMA requests of any address and length.
 */
import { FRCD_OFFSET, Gcmd, IOTLB_OFFSET, IVA_OFFSET, Reg } from "../../src/spec/index.ts";
import { enc, type J, type Rng, type Step } from "./program.ts";

const TE = Number(Gcmd.TE), SRTP = Number(Gcmd.SRTP), QIE = Number(Gcmd.QIE);

const MEANINGFUL = [
  Reg.GCMD, Reg.RTADDR, Reg.RTADDR + 4, Reg.CCMD, Reg.CCMD + 4, IVA_OFFSET, IVA_OFFSET + 4, IOTLB_OFFSET, IOTLB_OFFSET + 4,
  Reg.FSTS, Reg.FECTL, Reg.FEDATA, Reg.FEADDR, Reg.FEUADDR, Reg.IQH, Reg.IQT, Reg.IQA, Reg.ICS, Reg.IECTL, Reg.IEDATA, Reg.IEADDR,
  Reg.IQERCD, Reg.IRTA, Reg.PMEN, FRCD_OFFSET, FRCD_OFFSET + 8, FRCD_OFFSET + 12, FRCD_OFFSET + 24, Reg.VER, Reg.CAP, Reg.ECAP,
];

/** A register write: mostly aligned 4/8-byte accesses to the registers that matter, then anything. */
export function registerNoise(r: Rng, faultRecords: number, pages: number): Step & { op: "w" } {
  const window = FRCD_OFFSET + 16 * faultRecords;
  const v = r.weighted([60, 25, 15]);
  const off: J = v === 0 ? r.pick(MEANINGFUL) : v === 1 ? r.int(window + 64)
    : enc(r.pick([-4, -8, 0.5, 24.5, NaN, Infinity, 2 ** 53, 1e300, window - 4, window, window + 4, 2 ** 32 + 0x18]));
  const size: J = r.chance(0.78) ? r.pick([4, 8]) : r.chance(0.8) ? r.pick([1, 2]) : enc(r.pick([3, 16, 0, NaN, 4.5]));
  let value: bigint | number;
  const w = r.weighted([35, 25, 15, 10, 10, 5]);
  if (w === 0) value = r.pick([0n, 1n, 0x7fn, 1n << 31n, 1n << 63n, 0xffff_ffffn, BigInt(TE | SRTP), BigInt(QIE), BigInt(TE | QIE), 0x9680_0000n, 0x0880_0000n]);
  else if (w === 1) value = r.big64();
  else if (w === 2) value = BigInt(r.u32());
  else if (w === 3) value = r.pick([1n << 64n, (1n << 64n) + 0x1234n, 2n ** 200n, -1n, -(1n << 63n), -12345n]);
  else if (w === 4) value = BigInt(r.int(pages) * 4096) | BigInt(r.int(4));
  else value = r.pick([1.5, -1, NaN, 2 ** 60, 0.25, Infinity]);
  return { op: "w", off, size, value: enc(value) };
}

/** A DMA request: mostly near a mapping, else near RAM, 2^39, 2^48, 2^53, 2^64, the interrupt range, or no address at all. */
export function requestNoise(r: Rng, awBits: number, sids: readonly number[], maps: readonly { iova: number; level: number }[], pages: number): Step {
  const sid = r.chance(0.9) ? r.pick(sids) : r.chance(0.8) ? r.int(0x10000) : r.pick([0x10010, -1, 0x1_0000_0008]);
  const v = r.weighted([55, 8, 6, 5, 5, 4, 4, 4, 3, 3, 3]);
  let iova: number | bigint;
  if (v === 0 && maps.length > 0) {
    const m = r.pick(maps);
    const size = 2 ** (12 + 9 * (m.level - 1));
    iova = m.iova + (r.chance(0.5) ? r.int(4096) : r.int(size));
  } else if (v === 1) iova = r.int(pages * 4096 + 8192);
  else if (v === 2) iova = (1n << 64n) - BigInt(r.range(1, 8192));
  else if (v === 3) iova = 2 ** 53 + r.pick([-4096, 0, 4096]);
  else if (v === 4) iova = (1n << BigInt(r.pick([53, 56, 63]))) + BigInt(r.int(8192));
  else if (v === 5) iova = 2 ** awBits - r.range(1, 8192);
  else if (v === 6) iova = 0xfee0_0000 + r.int(0x10_0000);
  else if (v === 7) iova = r.pick([2n ** 1100n, 1n << 64n, -1n, -(1n << 70n)]);
  else if (v === 8) iova = r.pick([NaN, Infinity, -Infinity, -1, -4096, 1e300]);
  else if (v === 9) iova = r.int(1 << 22) + r.pick([0.5, 0.25, 0.999]);
  else iova = 2 ** 39 + r.int(1 << 20);
  if (typeof iova === "number" && Number.isSafeInteger(iova) && iova >= 0 && r.chance(0.3)) iova = BigInt(iova);
  const len = r.pick([0, 1, 2, 3, 4, 7, 8, 64, 100, 4095, 4096, 4097, 8192, 12289, r.int(16384), r.int(65536)]);
  return { op: "dma", sid, iova: enc(iova), len, write: r.chance(0.5), tag: r.u32() };
}

/** A descriptor of any type, mostly well formed (G, DID, SID, FM, ADDR, AM, IH), sometimes garbage. */
export function descriptorNoise(r: Rng, dids: readonly number[], sids: readonly number[], iova: bigint, statusPage: number, awBits: number): [bigint, bigint] {
  const v = r.weighted([25, 25, 10, 5, 15, 20]);
  const did = BigInt(r.pick(dids));
  let lo: bigint, hi = 0n;
  if (v === 0) lo = 1n | (BigInt(r.range(0, 3)) << 4n) | (did << 16n) | (BigInt(r.pick(sids)) << 32n) | (BigInt(r.range(0, 3)) << 48n);
  else if (v === 1) {
    lo = 2n | (BigInt(r.range(0, 3)) << 4n) | (did << 16n);
    hi = iova | BigInt(r.chance(0.8) ? r.range(0, 18) : r.range(19, 63)) | (r.chance(0.2) ? 0x40n : 0n);
    if (r.chance(0.1)) hi |= 1n << BigInt(r.range(awBits, 63));
  } else if (v === 2) ((lo = 3n | (BigInt(r.pick(sids)) << 32n)), (hi = iova));
  else if (v === 3) lo = 4n | (r.chance(0.5) ? 0x10n : 0n);
  else if (v === 4) ((lo = 5n | BigInt(r.range(0, 15) << 4) | (BigInt(r.u32()) << 32n)), (hi = BigInt(statusPage + r.int(1024) * 4)));
  else ((lo = r.big64()), (hi = r.big64()));
  if (r.chance(0.05)) lo |= 1n << BigInt(r.range(7, 63));
  return [lo, hi];
}

export function readNoise(r: Rng, faultRecords: number): Step {
  return { op: "r", off: r.chance(0.8) ? r.int(FRCD_OFFSET + 16 * faultRecords + 32) : enc(r.pick([-1, 0.5, NaN, 1e20])), size: r.pick([1, 2, 4, 8, 8, 3]) };
}

export function timeNoise(r: Rng): Step {
  return { op: "time", ms: enc(r.pick([0, 1, 3, 10, 1000, 60_000, 1e7, Infinity, NaN, -1, 0.5, -Infinity])) };
}

/** A raw notifier: mostly MAP/UNMAP over the whole width, sometimes a bad range or event set; 30% throw. */
export function notifyNoise(r: Rng, awBits: number, sids: readonly number[]): Step {
  const width = 2 ** awBits;
  const start = r.chance(0.7) ? 0 : r.pick([4096, 2 ** 21, width, -1, 0.5]);
  const end = r.chance(0.7) ? width : r.pick([2 ** 30, width + 1, 0, 4096]);
  return { op: "notify", sid: r.pick(sids), events: r.chance(0.9) ? r.range(1, 7) : r.pick([0, 8]), start: enc(start), end: enc(end), throws: r.chance(0.3) };
}

/** An input address aligned to `size` for a table of `levels` levels: low, near a mapping, at the tops, the interrupt range, random. */
export function iovaNoise(r: Rng, size: number, levels: number, nearby: number): number {
  const top = 2 ** (12 + 9 * levels);
  const v = r.weighted([40, 20, 8, 8, 5, 10]);
  if (v === 0) return r.int(32) * size;
  if (v === 1) return nearby - (nearby % size);
  if (v === 2) return top - size;
  if (v === 3) return 2 ** 39 - size;
  if (v === 4) return 0xfee0_0000 - (0xfee0_0000 % size);
  return ((Math.floor((r.int(2 ** 30) * 2 ** Math.max(0, 12 + 9 * levels - 30)) / size) * size) % top);
}

/** An output address aligned to `size`: mostly in RAM, else at its end, beyond it, the interrupt range, the top of HAW. */
export function outputNoise(r: Rng, size: number, ram: number, awBits: number): number {
  const v = r.weighted([70, 6, 6, 9, 4]);
  if (v === 0) return Math.floor(r.int(ram) / size) * size;
  if (v === 1) return Math.ceil(ram / size) * size - size; // the last block reaching RAM's end
  if (v === 2) return Math.ceil(ram / size) * size + r.int(4) * size; // outside RAM
  if (v === 3) return 0xfee0_0000 - (0xfee0_0000 % size) + (size === 4096 ? r.int(256) * 4096 : 0);
  return 2 ** awBits - size;
}
