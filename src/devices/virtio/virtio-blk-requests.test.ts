/**
 * virtio-blk requests through the real VtdDevice (IOVAs distinct from physical addresses): reads
 * and writes across descriptors and pages, the requester id on every access, FLUSH, GET_ID,
 * requests the device refuses, batches, and the interrupt paths (INTx, MSI, none).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { request, rig, same, pattern, SECTORS, SID, ST, T, type Rig } from "../../../test/support/virtio-blk-rig.ts";
import { S } from "../../../test/support/virtio-bench.ts";

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
    // The sector's high dword: 1 (2^32, a number), 2^21 (2^53) and all ones (2^64 - 1, which a
    // double would round to 2^64).
    const high = [2n ** 32n, 2n ** 53n, 2n ** 64n - 1n].map((sector) => request(r, T.OUT, sector, [{ length: 512 }]));
    r.bench.run();
    expect(high.map((q) => q.status())).toEqual([ST.IOERR, ST.IOERR, ST.IOERR]);
    expect(r.bench.ram.subarray(past.dataPhys[0]!, past.dataPhys[0]! + 1024).every((b) => b === 0x5a)).toBe(true);
    same(r.disk, before);
    expect(r.ring.usedElem(0).len).toBe(1);
    expect(r.blk.stats).toMatchObject({ ioErrors: 6, bytesRead: 0, bytesWritten: 0 });
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
