/**
 * The virtio-blk device on the virtio bench (virtio-bench.ts), for the unit tests in
 * src/devices/virtio: a rig (bench, device, test driver, ring, disk) and requests built the way a
 * driver builds them (header, data buffers, status byte). Constants are the spec's, written here
 * apart from the device's code.
 */
import { expect } from "vitest";
import { VirtioBlkDevice, type VirtioBlkOptions } from "../../src/devices/virtio/virtio-blk.ts";
import { setField } from "../../src/spec/field.ts";
import { Granularity, IOTLB_OFFSET, Iotlb, IVA_OFFSET } from "../../src/spec/registers.ts";
import { bit, F, firstDifference, TestDriver, TestRing, VirtioBench, type Buffer } from "./virtio-bench.ts";

export const SID = 9 << 3; // 00:09.0
export const FEATURES = bit(F.VERSION_1) | bit(F.ACCESS_PLATFORM) | bit(F.SEG_MAX) | bit(F.BLK_SIZE) | bit(F.FLUSH);
export const T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
export const ST = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export const SECTORS = 64;
/** The domain id the bench's context entry gives the device. */
const BENCH_DID = 1;

/** Byte arrays equal (toEqual is slow on typed arrays and prints megabytes when they differ). */
export function same(actual: Uint8Array, expected: Uint8Array): void {
  expect(firstDifference(actual, expected)).toBe(-1);
}

export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return bytes;
}

export interface Rig {
  bench: VirtioBench;
  blk: VirtioBlkDevice;
  driver: TestDriver;
  ring: TestRing;
  disk: Uint8Array;
}

export type RigOptions = Partial<Omit<VirtioBlkOptions, "port">> & { translate?: boolean; ringSize?: number; start?: boolean };

export function rig(options: RigOptions = {}): Rig {
  const bench = new VirtioBench(SID, { translate: options.translate ?? true });
  const disk = options.disk ?? pattern(SECTORS * 512, 1);
  const { translate: _t, ringSize: _r, start: _s, disk: _d, ...device } = options;
  const blk = new VirtioBlkDevice({ port: bench.port, disk, ...device });
  const driver = new TestDriver(blk, bench);
  const ring = new TestRing(bench, options.ringSize ?? 16);
  if (options.start ?? true) driver.start(ring, FEATURES);
  return { bench, blk, driver, ring, disk };
}

export interface Request {
  head: number;
  /** Physical addresses of the header, the data buffers and the status byte. */
  header: number;
  dataPhys: number[];
  statusPhys: number;
  status: () => number;
}

/**
 * A request: header (readable), data buffers, status byte (writable). A data buffer that is not
 * `mapped` gets no IOMMU mapping; it, and one with `ownPage`, has pages no other buffer shares.
 * `iova` puts that address in the buffer's descriptor instead of the bench's IOVA of its RAM.
 */
export function request(r: Rig, type: number, sector: number | bigint, data: { length: number; write?: boolean; mapped?: boolean; ownPage?: boolean; iova?: bigint }[] = [], notify = true): Request {
  const header = r.bench.alloc(16);
  const view = new DataView(r.bench.ram.buffer);
  view.setUint32(header, type, true);
  view.setUint32(header + 4, 0, true);
  view.setBigUint64(header + 8, BigInt(sector), true);
  const buffers: Buffer[] = [{ phys: header, length: 16 }];
  const dataPhys = data.map((d) => {
    const mapped = d.mapped ?? true;
    const own = !mapped || (d.ownPage ?? false);
    if (own) r.bench.nextPage();
    const phys = r.bench.alloc(d.length, own ? 0x1000 : 512, mapped);
    if (own) r.bench.nextPage();
    buffers.push({ phys, length: d.length, write: d.write ?? false, ...(d.iova !== undefined ? { iova: d.iova } : {}) });
    return phys;
  });
  const status = r.bench.alloc(1, 1);
  r.bench.ram[status] = 0xee;
  buffers.push({ phys: status, length: 1, write: true });
  const head = r.ring.add(buffers);
  if (notify) r.driver.notify(0);
  return { head, header, dataPhys, statusPhys: status, status: () => r.bench.ram[status]! };
}

/**
 * Unmaps the page holding `address` (an IOVA) as a driver would: its leaf entry cleared in the
 * bench's page table, then a page-selective IOTLB invalidation through the unit's registers.
 * Returns the function that maps it back (no invalidation needed: the unit caches no fault
 * without caching mode).
 */
export function unmapIova(r: Rig, address: bigint): () => void {
  const { m, root } = r.bench;
  const iova = Number(address) & ~0xfff;
  const leaf = m.tables.entryOf(root, 3, iova);
  const saved = m.ram.read64(leaf);
  m.ram.write64(leaf, 0n);
  m.device.writeRegister(IVA_OFFSET, 8, BigInt(iova));
  let command = setField(0n, Iotlb.IVT, 1);
  command = setField(command, Iotlb.IIRG, Granularity.Page);
  m.device.writeRegister(IOTLB_OFFSET, 8, setField(command, Iotlb.DID, BENCH_DID));
  expect(m.device.readRegister(IOTLB_OFFSET, 8) & (1n << 63n)).toBe(0n); // IVT clear: done
  return () => m.ram.write64(leaf, saved);
}
