import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { Fsts, Gcmd, Reg } from "../../spec/registers.ts";
import { InvalidationQueueError } from "../../spec/descriptors.ts";

const QUEUE = 0x10_0000;
const STATUS = 0x20_0000;

function queueUnit(options: object, dw: 0 | 1) {
  const ram = new GuestRam(16 << 20);
  const device = new VtdDevice({ memory: ram, ...options });
  device.writeRegister(Reg.IQA, 8, BigInt(QUEUE) | (BigInt(dw) << 11n));
  device.writeRegister(Reg.GCMD, 4, Gcmd.QIE);
  return { ram, device };
}

/** Writes 256-bit descriptors (four qwords each) from the head and moves the tail past them. */
function submit(u: ReturnType<typeof queueUnit>, descriptors: readonly (readonly bigint[])[], tailExtra = 0n) {
  descriptors.forEach((qwords, i) => {
    for (let q = 0; q < 4; q++) u.ram.write64(QUEUE + i * 32 + q * 8, qwords[q] ?? 0n);
  });
  u.device.writeRegister(Reg.IQT, 8, BigInt(descriptors.length * 32) | tailExtra);
}

const wait = (data: number) => [5n | 0x20n | (BigInt(data) << 32n), BigInt(STATUS)];
const pasidCache = (g: number, did = 1, pasid = 0) => [7n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n)];
const pasidIotlb = (g: number, am = 0, did = 1, pasid = 0) => [6n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n), 0x4000n | BigInt(am)];

function state(u: ReturnType<typeof queueUnit>) {
  return { iqh: u.device.readRegister(Reg.IQH, 8), iqe: (u.device.readRegister(Reg.FSTS, 4) & Fsts.IQE) !== 0n, iqei: u.device.readRegister(Reg.IQERCD, 8) & 0xfn };
}

describe("256-bit descriptors (IQA.DW = 1) in scalable mode (VT-d §6.5.2)", () => {
  it("a legacy unit keeps DW = 1 an invalid width (IQE, IQEI 5)", () => {
    const u = queueUnit({}, 1);
    submit(u, [wait(1)]);
    expect(state(u)).toEqual({ iqh: 0n, iqe: true, iqei: BigInt(InvalidationQueueError.InvalidWidth) });
  });

  it("PASID-cache (G 00, 01, 11), PASID-based IOTLB (G 10, 11 with AM ≤ MAMV) and a 256-bit wait complete; IQH counts 32-byte slots", () => {
    const u = queueUnit({ scalableMode: true, pasidBits: 20 }, 1);
    submit(u, [pasidCache(0), pasidCache(1, 4, 0xfffff), pasidCache(3), pasidIotlb(2), pasidIotlb(3, 18), [2n | (1n << 4n)], wait(0x1234)]);
    expect(state(u)).toEqual({ iqh: 7n * 32n, iqe: false, iqei: 0n });
    expect(u.ram.read32(STATUS)).toBe(0x1234);
  });

  const refused: [string, readonly bigint[], InvalidationQueueError][] = [
    ["PASID-cache G 10", pasidCache(2), InvalidationQueueError.ReservedField],
    ["PASID-cache with bits 127:64 set", [...pasidCache(0), 1n], InvalidationQueueError.ReservedField],
    ["PASID-cache with bits 63:52 set", [pasidCache(0)[0]! | (1n << 60n)], InvalidationQueueError.ReservedField],
    ["PASID-based IOTLB G 00", pasidIotlb(0), InvalidationQueueError.ReservedField],
    ["PASID-based IOTLB G 01", pasidIotlb(1), InvalidationQueueError.ReservedField],
    ["PASID-based IOTLB AM 19 above MAMV", pasidIotlb(3, 19), InvalidationQueueError.ReservedField],
    ["PASID-based IOTLB with hi bits 11:7 set", [pasidIotlb(2)[0]!, 0x80n], InvalidationQueueError.ReservedField],
    ["a wait descriptor with bits 255:128 set", [...wait(1), 0n, 1n], InvalidationQueueError.ReservedField],
    ["PASID-based device-TLB without ECAP.DT", [8n], InvalidationQueueError.InvalidType],
    ["an unknown type", [0x9n], InvalidationQueueError.InvalidType],
  ];
  for (const [name, descriptor, iqei] of refused) {
    it(`${name}: IQE with IQEI ${iqei}, the head stays on it`, () => {
      const u = queueUnit({ scalableMode: true }, 1);
      submit(u, [wait(1), descriptor, wait(2)]);
      expect(state(u)).toEqual({ iqh: 32n, iqe: true, iqei: BigInt(iqei) });
      expect(u.ram.read32(STATUS)).toBe(1);
    });
  }

  it("PASID-based device-TLB invalidation with ECAP.DT reaches the endpoint as the legacy descriptor does; PFSID (no DIT) and bits 10:1 reserved", () => {
    const u = queueUnit({ scalableMode: true, pasidBits: 8, deviceIotlb: true }, 1);
    const pdt = (extraLo = 0n, hi = 0x7000n) => [8n | (0x18n << 16n) | (5n << 32n) | extraLo, hi];
    submit(u, [pdt(), pdt(0n, 0x7000n | 1n | (1n << 11n)), wait(3)]);
    expect(state(u)).toEqual({ iqh: 3n * 32n, iqe: false, iqei: 0n });
    expect(u.device.stats.deviceIotlbInvalidations).toBe(2);
    const bad = queueUnit({ scalableMode: true, deviceIotlb: true }, 1);
    submit(bad, [pdt(1n << 12n)]);
    expect(state(bad)).toEqual({ iqh: 0n, iqe: true, iqei: BigInt(InvalidationQueueError.ReservedField) });
    const badHi = queueUnit({ scalableMode: true, deviceIotlb: true }, 1);
    submit(badHi, [pdt(0n, 0x7000n | 2n)]);
    expect(state(badHi).iqe).toBe(true);
  });

  it("IQT bit 4 with 256-bit descriptors is an invalid tail (IQEI 1)", () => {
    const u = queueUnit({ scalableMode: true }, 1);
    submit(u, [wait(1)], 0x10n);
    expect(state(u)).toEqual({ iqh: 0n, iqe: true, iqei: BigInt(InvalidationQueueError.InvalidTail) });
  });

  it("a scalable-mode unit still runs a 128-bit queue, where the PASID types are invalid", () => {
    const u = queueUnit({ scalableMode: true }, 0);
    u.ram.write64(QUEUE, wait(7)[0]!);
    u.ram.write64(QUEUE + 8, BigInt(STATUS));
    u.ram.write64(QUEUE + 16, pasidCache(0)[0]!);
    u.device.writeRegister(Reg.IQT, 8, 32n);
    expect(state(u)).toEqual({ iqh: 16n, iqe: true, iqei: BigInt(InvalidationQueueError.InvalidType) });
    expect(u.ram.read32(STATUS)).toBe(7);
  });

  it("random 256-bit descriptors never throw and leave the queue in a consistent state", () => {
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const qword = () => BigInt(Math.floor(random() * 2 ** 32)) << 32n | BigInt(Math.floor(random() * 2 ** 32));
    for (let round = 0; round < 300; round++) {
      const u = queueUnit({ scalableMode: true, pasidBits: 8, deviceIotlb: round % 2 === 0 }, 1);
      const types = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 0n];
      const n = 1 + Math.floor(random() * 20);
      const descriptors = Array.from({ length: n }, () => {
        const sparse = (q: bigint) => (random() < 0.7 ? q & 0x3ff_ffff_f0n : q);
        return [(sparse(qword()) & ~0xe0fn) | types[Math.floor(random() * types.length)]!, sparse(qword()), random() < 0.8 ? 0n : qword(), random() < 0.8 ? 0n : qword()];
      });
      expect(() => submit(u, descriptors)).not.toThrow();
      const s = state(u);
      expect(s.iqh % 32n).toBe(0n);
      expect(s.iqh <= BigInt(n * 32)).toBe(true);
      if (!s.iqe) expect(s.iqh).toBe(BigInt(n * 32));
    }
  });
});
