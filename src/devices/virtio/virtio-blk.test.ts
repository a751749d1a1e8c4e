/**
 * The virtio-blk device driven as a driver would (test/support/virtio-bench.ts): feature
 * negotiation, queue setup, requests whose every ring and buffer access the real VtdDevice
 * translates (IOVAs distinct from physical addresses), DMA faults, interrupts, bad requests.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { buildConfigSpace, PciReg, PciStatus } from "../pci-config.ts";
import { Fsts, Reg } from "../../spec/registers.ts";
import { Bar, bit, Common, F, firstDifference, S, TestDriver, TestRing, VirtioBench, type Buffer } from "../../../test/support/virtio-bench.ts";
import { VirtioBlkDevice, virtioBlkPciIdentity, type VirtioBlkOptions } from "./virtio-blk.ts";

const SID = 9 << 3; // 00:09.0
const FEATURES = bit(F.VERSION_1) | bit(F.ACCESS_PLATFORM) | bit(F.SEG_MAX) | bit(F.BLK_SIZE) | bit(F.FLUSH);
const T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
const ST = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
const SECTORS = 64;

/** Byte arrays equal (toEqual is slow on typed arrays and prints megabytes when they differ). */
function same(actual: Uint8Array, expected: Uint8Array): void {
  expect(firstDifference(actual, expected)).toBe(-1);
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return bytes;
}

interface Rig {
  bench: VirtioBench;
  blk: VirtioBlkDevice;
  driver: TestDriver;
  ring: TestRing;
  disk: Uint8Array;
}

function rig(options: Partial<Omit<VirtioBlkOptions, "port">> & { translate?: boolean; ringSize?: number; start?: boolean } = {}): Rig {
  const bench = new VirtioBench(SID, { translate: options.translate ?? true });
  const disk = options.disk ?? pattern(SECTORS * 512, 1);
  const blk = new VirtioBlkDevice({ port: bench.port, disk, ...(options.readOnly !== undefined ? { readOnly: options.readOnly } : {}), ...(options.serial !== undefined ? { serial: options.serial } : {}), ...(options.queueSize !== undefined ? { queueSize: options.queueSize } : {}) });
  const driver = new TestDriver(blk, bench);
  const ring = new TestRing(bench, options.ringSize ?? 16);
  if (options.start ?? true) driver.start(ring, FEATURES);
  return { bench, blk, driver, ring, disk };
}

/** A request: header (readable), data buffers, status byte (writable). Returns the buffers' addresses. */
function request(r: Rig, type: number, sector: number, data: { length: number; write?: boolean }[] = [], notify = true) {
  const header = r.bench.alloc(16);
  const view = new DataView(r.bench.ram.buffer);
  view.setUint32(header, type, true);
  view.setUint32(header + 4, 0, true);
  view.setBigUint64(header + 8, BigInt(sector), true);
  const buffers: Buffer[] = [{ phys: header, length: 16 }];
  const dataPhys = data.map((d) => {
    const phys = r.bench.alloc(d.length, 512);
    buffers.push({ phys, length: d.length, write: d.write ?? false });
    return phys;
  });
  const status = r.bench.alloc(1, 1);
  r.bench.ram[status] = 0xee;
  buffers.push({ phys: status, length: 1, write: true });
  const head = r.ring.add(buffers);
  if (notify) r.driver.notify(0);
  return { head, dataPhys, status: () => r.bench.ram[status]! };
}

describe("virtio-blk: PCI identity and capabilities", () => {
  const identity = virtioBlkPciIdentity(0xfe80_0000);
  const { bytes } = buildConfigSpace(identity);
  const view = new DataView(bytes.buffer);

  it("is a modern virtio block function: 1af4:1042 rev 1, INTA, a 16 KiB memory BAR0", () => {
    expect(view.getUint32(PciReg.VENDOR_ID, true)).toBe(0x1042_1af4);
    expect(bytes[PciReg.REVISION_ID]).toBe(1);
    expect(view.getUint16(PciReg.SUBSYSTEM_VENDOR_ID, true)).toBe(0x1af4);
    expect(bytes[PciReg.INTERRUPT_PIN]).toBe(1);
    expect(view.getUint32(PciReg.BAR0, true)).toBe(0xfe80_0000);
    expect(identity.bars).toEqual([{ index: 0, address: 0xfe80_0000, size: 0x4000 }]);
  });

  it("chains MSI and the four virtio structures, each in BAR0 where the driver expects it", () => {
    expect(view.getUint16(PciReg.STATUS, true) & PciStatus.CAPABILITIES_LIST).toBeTruthy();
    const found: Record<number, { bar: number; offset: number; length: number; multiplier?: number }> = {};
    const ids: number[] = [];
    for (let at = bytes[PciReg.CAPABILITIES_POINTER]!, n = 0; at !== 0 && n < 48; at = bytes[at + 1]!, n++) {
      ids.push(bytes[at]!);
      if (bytes[at] !== 0x09) continue;
      const type = bytes[at + 3]!;
      found[type] = { bar: bytes[at + 4]!, offset: view.getUint32(at + 8, true), length: view.getUint32(at + 12, true) };
      if (type === 2) found[type]!.multiplier = view.getUint32(at + 16, true);
      expect(bytes[at + 2]).toBe(type === 2 ? 20 : 16); // cap_len
    }
    expect(ids).toEqual([0x05, 0x09, 0x09, 0x09, 0x09]);
    expect(found).toEqual({
      1: { bar: 0, offset: Bar.COMMON, length: 0x38 },
      3: { bar: 0, offset: Bar.ISR, length: 4 },
      4: { bar: 0, offset: Bar.DEVICE, length: 0x3c },
      2: { bar: 0, offset: Bar.NOTIFY, length: 4, multiplier: 4 },
    });
  });
});

describe("virtio-blk: feature negotiation and status", () => {
  let r: Rig;
  beforeEach(() => (r = rig({ start: false })));

  it("offers VERSION_1, ACCESS_PLATFORM, SEG_MAX, BLK_SIZE and FLUSH, nothing else", () => {
    expect(r.driver.deviceFeatures()).toBe(FEATURES);
    r.driver.write(Bar.COMMON + Common.DFSELECT, 4, 2);
    expect(r.driver.read(Bar.COMMON + Common.DF, 4)).toBe(0);
    expect(rig({ start: false, readOnly: true }).driver.deviceFeatures()).toBe(FEATURES | bit(F.RO));
  });

  it("keeps FEATURES_OK for an offered subset with VERSION_1", () => {
    expect(r.driver.negotiate(bit(F.VERSION_1) | bit(F.ACCESS_PLATFORM))).toBe(true);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER | S.FEATURES_OK);
    expect(r.blk.stats.featureNegotiationFailures).toBe(0);
  });

  it("refuses FEATURES_OK without VERSION_1, and for a feature it did not offer", () => {
    expect(r.driver.negotiate(bit(F.ACCESS_PLATFORM) | bit(F.FLUSH))).toBe(false);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER);
    expect(r.blk.stats).toMatchObject({ featureNegotiationFailures: 1, lastError: expect.stringMatching(/VERSION_1/) });
    r.driver.addStatus(S.DRIVER_OK); // no DRIVER_OK without FEATURES_OK
    expect(r.driver.status & S.DRIVER_OK).toBe(0);
    expect(r.driver.negotiate(bit(F.VERSION_1) | bit(F.INDIRECT))).toBe(false);
    expect(r.blk.stats.lastError).toMatch(/not offered: 0x10000000/);
    // The same driver can try again after a reset, and succeed.
    expect(r.driver.negotiate(FEATURES)).toBe(true);
    expect(r.blk.stats.featureNegotiationFailures).toBe(2);
  });

  it("ignores driver feature writes after FEATURES_OK, and status bits the driver tries to clear", () => {
    r.driver.negotiate(bit(F.VERSION_1));
    r.driver.writeDriverFeatures(FEATURES);
    r.driver.write(Bar.COMMON + Common.GFSELECT, 4, 0);
    expect(r.driver.read(Bar.COMMON + Common.GF, 4)).toBe(0);
    expect(r.blk.transport.negotiatedFeatures).toBe(bit(F.VERSION_1));
    r.driver.setStatus(S.ACK);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER | S.FEATURES_OK);
  });

  it("answers the common configuration: one queue of 128, no MSI-X vectors, device config", () => {
    const c = (offset: number, size: 1 | 2 | 4) => r.driver.read(Bar.COMMON + offset, size);
    expect(c(Common.NUMQ, 2)).toBe(1);
    expect(c(Common.Q_SIZE, 2)).toBe(128);
    expect(c(Common.Q_NOFF, 2)).toBe(0);
    expect(c(Common.MSIX, 2)).toBe(0xffff);
    r.driver.write(Bar.COMMON + Common.Q_MSIX, 2, 0);
    expect(c(Common.Q_MSIX, 2)).toBe(0xffff);
    r.driver.write(Bar.COMMON + Common.Q_SELECT, 2, 1); // no queue 1
    expect(c(Common.Q_SIZE, 2)).toBe(0);
    r.driver.write(Bar.COMMON + Common.Q_SIZE, 2, 8);
    expect(c(Common.Q_SIZE, 2)).toBe(0);
    expect(r.driver.read(Bar.COMMON + 0x38, 4)).toBe(0xffff_ffff); // past the structure
    const d = (offset: number, size: 4 | 8) => r.blk.readMmio(Bar.DEVICE + offset, size);
    expect(d(0, 8)).toBe(BigInt(SECTORS)); // capacity
    expect(d(4, 4)).toBe(0n);
    expect(d(0x0c, 4)).toBe(126n); // seg_max
    expect(d(0x14, 4)).toBe(512n); // blk_size
    r.blk.writeMmio(Bar.DEVICE, 4, 0n); // read-only
    expect(d(0, 8)).toBe(BigInt(SECTORS));
  });

  it("takes 16-bit fields a byte at a time and 64-bit addresses as two dwords", () => {
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_SIZE, 0x40);
    expect(r.driver.read(Bar.COMMON + Common.Q_SIZE, 2)).toBe(0x40);
    r.driver.write(Bar.COMMON + Common.Q_DESC, 4, 0x1234_5670);
    r.driver.write(Bar.COMMON + Common.Q_DESC + 4, 4, 0x9);
    expect(r.blk.readMmio(Bar.COMMON + Common.Q_DESC, 8)).toBe(0x9_1234_5670n);
    r.driver.write(Bar.COMMON + Common.Q_AVAIL, 8, 0xa_0000_1000n);
    expect(r.blk.transport.common.queues[0]!.driverArea).toBe(0xa_0000_1000n);
  });

  it("resets everything when 0 is written to device_status", () => {
    r.driver.start(r.ring, FEATURES);
    r.bench.intx = false;
    request(r, T.FLUSH, 0);
    r.bench.run();
    expect(r.bench.intx).toBe(true);
    r.driver.setStatus(0);
    expect(r.driver.status).toBe(0);
    expect(r.bench.intx).toBe(false);
    expect(r.driver.readIsr()).toBe(0);
    expect(r.driver.read(Bar.COMMON + Common.Q_ENABLE, 2)).toBe(0);
    expect(r.driver.read(Bar.COMMON + Common.Q_SIZE, 2)).toBe(128);
    expect(r.blk.readMmio(Bar.COMMON + Common.Q_DESC, 8)).toBe(0n);
    expect(r.blk.transport.negotiatedFeatures).toBe(0n);
    expect(r.blk.stats.resets).toBe(2); // negotiate() starts with one
  });

  it("refuses to enable a queue whose size is not a power of two (DEVICE_NEEDS_RESET)", () => {
    r.driver.negotiate(FEATURES);
    r.driver.setupQueue(0, new TestRing(r.bench, 16), { enable: false });
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_SIZE, 12);
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_ENABLE, 1);
    expect(r.driver.read(Bar.COMMON + Common.Q_ENABLE, 2)).toBe(0);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.stats.lastError).toMatch(/size 12 is not a power of two/);
  });

  it("stops serving once the driver sets FAILED", () => {
    r.driver.start(r.ring, FEATURES);
    r.bench.run(); // DRIVER_OK: the device looked at its queues
    r.driver.addStatus(S.FAILED);
    request(r, T.FLUSH, 0);
    expect(r.bench.scheduled).toHaveLength(0);
    expect(r.ring.usedIdx).toBe(0);
  });

  it("does nothing for a notification before DRIVER_OK", () => {
    r.driver.negotiate(FEATURES);
    r.driver.setupQueue(0, r.ring);
    request(r, T.FLUSH, 0);
    expect(r.bench.scheduled).toHaveLength(0);
    expect(r.blk.stats.notifications).toBe(1);
    r.driver.addStatus(S.DRIVER_OK); // the device then looks at its queues
    r.bench.run();
    expect(r.ring.usedIdx).toBe(1);
  });
});

describe("virtio-blk: requests through the IOMMU", () => {
  let r: Rig;
  beforeEach(() => (r = rig()));

  it("reads sectors into buffers split across descriptors and pages, then interrupts through INTx", () => {
    const req = request(r, T.IN, 3, [{ length: 512, write: true }, { length: 3 * 512, write: true }]);
    expect(r.bench.scheduled).toHaveLength(1); // nothing happens inside the MMIO write
    expect(r.ring.usedIdx).toBe(0);
    r.bench.run();
    expect(req.status()).toBe(ST.OK);
    same(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512), r.disk.subarray(3 * 512, 4 * 512));
    same(r.bench.ram.subarray(req.dataPhys[1]!, req.dataPhys[1]! + 1536), r.disk.subarray(4 * 512, 7 * 512));
    expect(r.ring.usedIdx).toBe(1);
    expect(r.ring.usedElem(0)).toEqual({ id: req.head, len: 2048 + 1 });
    expect(r.bench.intx).toBe(true);
    expect(r.blk.stats).toMatchObject({ requests: 1, reads: 1, bytesRead: 2048, interrupts: 1, dmaFaults: 0 });
    // ISR: read returns and clears the queue bit, and deasserts INTx.
    expect(r.driver.readIsr()).toBe(1);
    expect(r.bench.intx).toBe(false);
    expect(r.driver.readIsr()).toBe(0);
  });

  it("writes sectors to the disk, exactly the range asked", () => {
    const before = r.disk.slice();
    const req = request(r, T.OUT, 10, [{ length: 1024 }], false);
    const data = pattern(1024, 9);
    r.bench.ram.set(data, req.dataPhys[0]!);
    r.driver.notify(0);
    r.bench.run();
    expect(req.status()).toBe(ST.OK);
    same(r.disk.subarray(10 * 512, 12 * 512), data);
    same(r.disk.subarray(0, 10 * 512), before.subarray(0, 10 * 512));
    same(r.disk.subarray(12 * 512), before.subarray(12 * 512));
    expect(r.ring.usedElem(0).len).toBe(1);
    expect(r.blk.stats).toMatchObject({ writes: 1, bytesWritten: 1024 });
  });

  it("translates through the unit: each access carries the function's requester id", () => {
    const trace: number[] = [];
    const device = r.bench.m.device;
    const read = device.dmaRead.bind(device);
    device.dmaRead = (sid, iova, into) => (trace.push(sid), read(sid, iova, into));
    request(r, T.IN, 0, [{ length: 512, write: true }]);
    r.bench.run();
    expect(trace.length).toBeGreaterThanOrEqual(4); // avail idx, ring entry, descriptors, header, flags
    expect(new Set(trace)).toEqual(new Set([SID]));
  });

  it("answers FLUSH, GET_ID (the serial, NUL padded) and an unknown type (UNSUPP)", () => {
    const flush = request(r, T.FLUSH, 0);
    const id = request(r, T.GET_ID, 0, [{ length: 20, write: true }]);
    const unknown = request(r, 99, 0);
    r.bench.run();
    expect([flush.status(), id.status(), unknown.status()]).toEqual([ST.OK, ST.OK, ST.UNSUPP]);
    const serial = new TextDecoder().decode(r.bench.ram.subarray(id.dataPhys[0]!, id.dataPhys[0]! + 20));
    expect(serial).toBe("v86-vtd-virtio-blk\0\0");
    expect(r.ring.usedElem(1).len).toBe(21);
    expect(r.blk.stats).toMatchObject({ flushes: 1, getIds: 1, unsupported: 1, requests: 3 });
  });

  it("answers bad requests with IOERR and touches neither the disk nor the buffers", () => {
    const before = r.disk.slice();
    const past = request(r, T.IN, SECTORS - 1, [{ length: 1024, write: true }]);
    const partial = request(r, T.OUT, 0, [{ length: 100 }]);
    const huge = request(r, T.IN, 2 ** 52, [{ length: 512, write: true }]);
    r.bench.ram.fill(0x5a, past.dataPhys[0]!, past.dataPhys[0]! + 1024);
    r.bench.run();
    expect([past.status(), partial.status(), huge.status()]).toEqual([ST.IOERR, ST.IOERR, ST.IOERR]);
    expect(r.bench.ram.subarray(past.dataPhys[0]!, past.dataPhys[0]! + 1024).every((b) => b === 0x5a)).toBe(true);
    same(r.disk, before);
    expect(r.ring.usedElem(0).len).toBe(1);
    expect(r.blk.stats).toMatchObject({ ioErrors: 3, bytesRead: 0, bytesWritten: 0 });
    expect(r.driver.status & S.NEEDS_RESET).toBe(0);
  });

  it("answers a short header, a readable buffer after a writable one and a chain without a status byte", () => {
    const shortHeader = r.bench.alloc(8);
    const status1 = r.bench.alloc(1, 1);
    r.ring.add([{ phys: shortHeader, length: 8 }, { phys: status1, length: 1, write: true }]);
    const header = r.bench.alloc(16);
    const status2 = r.bench.alloc(1, 1);
    r.ring.add([{ phys: header, length: 16 }, { phys: r.bench.alloc(512), length: 512, write: true }, { phys: r.bench.alloc(512), length: 512 }, { phys: status2, length: 1, write: true }]);
    r.ring.add([{ phys: r.bench.alloc(16), length: 16 }]);
    r.bench.ram[status1] = r.bench.ram[status2] = 0xee;
    r.driver.notify(0);
    r.bench.run();
    expect([r.bench.ram[status1], r.bench.ram[status2]]).toEqual([ST.IOERR, ST.IOERR]);
    expect(r.ring.usedIdx).toBe(3);
    expect(r.ring.usedElem(2).len).toBe(0);
    expect(r.blk.stats).toMatchObject({ ioErrors: 2, malformed: 1, requests: 3 });
  });

  it("refuses writes to a read-only disk", () => {
    const ro = rig({ readOnly: true });
    const before = ro.disk.slice();
    const req = request(ro, T.OUT, 0, [{ length: 512 }]);
    ro.bench.run();
    expect(req.status()).toBe(ST.IOERR);
    same(ro.disk, before);
  });

  it("serves a batch with one interrupt, wrapping around a small ring", () => {
    const small = rig({ ringSize: 8 });
    for (let round = 0; round < 5; round++) {
      const reqs = [0, 1].map((i) => request(small, T.IN, round * 2 + i, [{ length: 512, write: true }], i === 1));
      small.bench.run();
      reqs.forEach((req, i) => {
        expect(req.status()).toBe(ST.OK);
        same(small.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512), small.disk.subarray((round * 2 + i) * 512, (round * 2 + i + 1) * 512));
        expect(small.ring.usedElem(round * 2 + i)).toEqual({ id: req.head, len: 513 });
      });
      expect(small.driver.readIsr()).toBe(1);
    }
    expect(small.ring.usedIdx).toBe(10);
    expect(small.blk.stats).toMatchObject({ requests: 10, interrupts: 5, notifications: 5 });
  });

  it("sends an MSI instead of INTx when the function's MSI is enabled; the ISR still says why", () => {
    r.bench.msiEnabled = true;
    request(r, T.FLUSH, 0);
    r.bench.run();
    request(r, T.FLUSH, 0);
    r.bench.run();
    expect(r.bench.msisSent).toBe(2);
    expect(r.bench.intxChanges).toBe(0);
    expect(r.driver.readIsr()).toBe(1);
  });

  it("does not interrupt when the driver set VIRTQ_AVAIL_F_NO_INTERRUPT", () => {
    r.ring.setAvailFlags(1);
    const req = request(r, T.FLUSH, 0);
    r.bench.run();
    expect(req.status()).toBe(ST.OK);
    expect(r.ring.usedIdx).toBe(1);
    expect(r.bench.intx).toBe(false);
    expect(r.blk.stats.interrupts).toBe(0);
  });
});

describe("virtio-blk: DMA faults and ring errors stop the device", () => {
  it("a ring the IOMMU does not map: DEVICE_NEEDS_RESET, a fault recorded, no memory touched", () => {
    const r = rig({ start: false });
    r.bench.nextPage();
    const unmapped = new TestRing(r.bench, 16, { map: false }); // in a page of its own
    r.bench.nextPage();
    r.driver.start(unmapped, FEATURES);
    r.ring = unmapped;
    request(r, T.IN, 0, [{ length: 512, write: true }], false);
    const ram = r.bench.ram.slice();
    r.driver.notify(0);
    r.bench.run();
    expect(firstDifference(r.bench.ram, ram)).toBe(-1);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.stats).toMatchObject({ dmaFaults: 1, deviceErrors: 1, requests: 0, lastError: expect.stringMatching(/available ring idx/) });
    expect(r.blk.transport.stats.lastQueueFailure).toMatchObject({ kind: "dma", result: { ok: false } });
    expect(r.bench.m.device.readRegister(Reg.FSTS, 4) & BigInt(Fsts.PPF)).toBeTruthy(); // a fault record is pending
    // A configuration change interrupt tells the driver.
    expect(r.bench.intx).toBe(true);
    expect(r.driver.readIsr()).toBe(2);
    // Nothing more happens until a reset.
    r.driver.notify(0);
    expect(r.bench.scheduled).toHaveLength(0);
    r.driver.setStatus(0);
    expect(r.driver.status).toBe(0);
    const mapped = new TestRing(r.bench, 16);
    r.driver.start(mapped, FEATURES);
    r.ring = mapped;
    const req = request(r, T.IN, 0, [{ length: 512, write: true }]);
    r.bench.run();
    expect(req.status()).toBe(ST.OK);
  });

  it("a data buffer the IOMMU maps read-only: the IN request stops, nothing is marked used", () => {
    const r = rig();
    const req = request(r, T.IN, 0, [{ length: 512, write: true }], false);
    r.bench.map(req.dataPhys[0]!, 512, 1n); // read only
    const ram = r.bench.ram.slice();
    r.driver.notify(0);
    r.bench.run();
    expect(firstDifference(r.bench.ram, ram)).toBe(-1);
    expect(r.ring.usedIdx).toBe(0);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.stats).toMatchObject({ dmaFaults: 1, lastError: expect.stringMatching(/write to buffer 1/) });
  });

  const ringErrors: [string, (r: Rig) => void, RegExp][] = [
    ["a head outside the table", (r) => r.ring.publish(40), /descriptor index 40 outside/],
    ["an available idx far ahead", (r) => r.ring.setAvailIdx(100), /100 ahead/],
    ["a chain that loops", (r) => r.ring.add([{ phys: r.bench.alloc(16), length: 16 }, { phys: r.bench.alloc(1), length: 1, write: true }], { next: [1, 0], flags: [1, 3] }), /longer than the queue/],
    ["an indirect descriptor", (r) => r.ring.add([{ phys: r.bench.alloc(16), length: 16 }], { flags: [4] }), /indirect/],
  ];
  for (const [name, break_, message] of ringErrors) {
    it(`a ring error (${name}): DEVICE_NEEDS_RESET, never a throw`, () => {
      const r = rig();
      break_(r);
      r.driver.notify(0);
      expect(() => r.bench.run()).not.toThrow();
      expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
      expect(r.blk.stats).toMatchObject({ dmaFaults: 0, deviceErrors: 1, lastError: expect.stringMatching(message) });
    });
  }

  it("survives random register writes and random ring contents without throwing", () => {
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let round = 0; round < 20; round++) {
      const r = rig({ translate: round % 2 === 0 });
      for (let i = 0; i < 4096; i++) r.bench.ram[r.ring.desc + (Math.floor(random() * 16 * 16) | 0)] = Math.floor(random() * 256);
      r.ring.setAvailIdx(Math.floor(random() * 65536));
      for (let i = 0; i < 200; i++) {
        const offset = [Bar.COMMON, Bar.ISR, Bar.DEVICE, Bar.NOTIFY][Math.floor(random() * 4)]! + Math.floor(random() * 0x40);
        const size = ([1, 2, 4, 8] as const)[Math.floor(random() * 4)]!;
        const value = BigInt(Math.floor(random() * 2 ** 32)) * BigInt(Math.floor(random() * 2 ** 32));
        expect(() => (random() < 0.5 ? r.blk.writeMmio(offset, size, value) : r.blk.readMmio(offset, size))).not.toThrow();
        if (i % 50 === 0) expect(() => r.bench.run()).not.toThrow();
      }
      expect(() => r.bench.run()).not.toThrow();
    }
  });
});

describe("virtio-blk: options", () => {
  const port = new VirtioBench(SID).port;
  it("names the option that is wrong", () => {
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(1000) })).toThrow(/option disk: 1000 bytes is not a whole/);
    expect(() => new VirtioBlkDevice({ port, disk: [] as unknown as Uint8Array })).toThrow(/option disk: expected a Uint8Array/);
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(512), queueSize: 100 })).toThrow(/option queueSize: 100/);
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(512), serial: "x".repeat(21) })).toThrow(/option serial/);
  });
});
