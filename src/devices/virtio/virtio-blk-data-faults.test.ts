/**
 * A DMA fault on a request's data buffer (Virtio 1.2 §5.2.6: VIRTIO_BLK_S_IOERR is "device or
 * driver error") fails that request alone: IOERR in its status byte, the used element, the
 * interrupt, and the next request is served. The unit records the fault as for any DMA (FRCD,
 * FSTS.PPF). Data buffers here have IOVAs the unit does not map, or maps read-only.
 */
import { describe, expect, it } from "vitest";
import { getField } from "../../spec/field.ts";
import { FaultReason } from "../../spec/fault-reasons.ts";
import { Cap, FRCD_OFFSET, FrcdHi, FrcdLo, Fsts, Reg } from "../../spec/registers.ts";
import { S } from "../../../test/support/virtio-bench.ts";
import { pattern, request, rig, same, SID, ST, T, unmapIova, type Rig } from "../../../test/support/virtio-blk-rig.ts";

/** Fault recording register `i` of the rig's unit, decoded. */
function faultRecord(r: Rig, i = 0) {
  const lo = r.bench.m.device.readRegister(FRCD_OFFSET + 16 * i, 8);
  const hi = r.bench.m.device.readRegister(FRCD_OFFSET + 16 * i + 8, 8);
  return {
    fault: getField(hi, FrcdHi.F) === 1n,
    page: lo & FrcdLo.FI,
    sid: Number(getField(hi, FrcdHi.SID)),
    reason: Number(getField(hi, FrcdHi.FR)),
    /** T1: 1 for a read request, 0 for a write. */
    read: getField(hi, FrcdHi.T1) === 1n,
  };
}

function ppf(r: Rig): boolean {
  return (r.bench.m.device.readRegister(Reg.FSTS, 4) & BigInt(Fsts.PPF)) !== 0n;
}

describe("virtio-blk: a DMA fault on a data buffer fails that request alone", () => {
  it("an IN whose data IOVA is unmapped: IOERR, used, interrupt, the fault in FRCD; the next read succeeds", () => {
    const r = rig();
    const bad = request(r, T.IN, 2, [{ length: 1024, write: true, mapped: false }]);
    r.bench.ram.fill(0x5a, bad.dataPhys[0]!, bad.dataPhys[0]! + 1024);
    r.bench.run();
    expect(bad.status()).toBe(ST.IOERR);
    expect(r.bench.ram.subarray(bad.dataPhys[0]!, bad.dataPhys[0]! + 1024).every((b) => b === 0x5a)).toBe(true);
    expect(r.ring.usedIdx).toBe(1);
    expect(r.ring.usedElem(0)).toEqual({ id: bad.head, len: 1 });
    expect(r.bench.intx).toBe(true);
    expect(r.driver.readIsr()).toBe(1); // a queue interrupt, not a configuration change
    expect(r.driver.status & S.NEEDS_RESET).toBe(0);
    expect(r.blk.stats).toMatchObject({ requests: 1, reads: 1, bytesRead: 0, ioErrors: 1, dataFaults: 1, dmaFaults: 1, deviceErrors: 0, lastError: undefined });
    expect(r.blk.stats.lastDataFault).toMatchObject({ kind: "dma", what: expect.stringMatching(/write to buffer 1/), address: BigInt(r.bench.iova(bad.dataPhys[0]!)), result: { ok: false, reason: FaultReason.WriteNotPermitted } });
    // The unit recorded it: the device's requester id, the buffer's page, a write (reason 5: the PTE is not present).
    expect(ppf(r)).toBe(true);
    expect(faultRecord(r)).toEqual({ fault: true, page: BigInt(r.bench.iova(bad.dataPhys[0]!)), sid: SID, reason: FaultReason.WriteNotPermitted, read: false });

    const good = request(r, T.IN, 5, [{ length: 512, write: true }]);
    r.bench.run();
    expect(good.status()).toBe(ST.OK);
    same(r.bench.ram.subarray(good.dataPhys[0]!, good.dataPhys[0]! + 512), r.disk.subarray(5 * 512, 6 * 512));
    expect(r.ring.usedElem(1)).toEqual({ id: good.head, len: 513 });
    expect(r.blk.stats).toMatchObject({ requests: 2, bytesRead: 512, ioErrors: 1, dataFaults: 1, interrupts: 2 });
  });

  it("an OUT whose data IOVA is unmapped: IOERR, the disk untouched, the fault a read in FRCD; the next write succeeds", () => {
    const r = rig();
    const before = r.disk.slice();
    const bad = request(r, T.OUT, 4, [{ length: 512, mapped: false }], false);
    r.bench.ram.set(pattern(512, 3), bad.dataPhys[0]!);
    r.driver.notify(0);
    r.bench.run();
    expect(bad.status()).toBe(ST.IOERR);
    same(r.disk, before);
    expect(r.ring.usedElem(0)).toEqual({ id: bad.head, len: 1 });
    expect(r.driver.status & S.NEEDS_RESET).toBe(0);
    expect(r.blk.stats).toMatchObject({ writes: 1, bytesWritten: 0, dataFaults: 1, deviceErrors: 0 });
    expect(r.blk.stats.lastDataFault).toMatchObject({ what: expect.stringMatching(/read of buffer 1/), result: { reason: FaultReason.ReadNotPermitted } });
    expect(faultRecord(r)).toEqual({ fault: true, page: BigInt(r.bench.iova(bad.dataPhys[0]!)), sid: SID, reason: FaultReason.ReadNotPermitted, read: true });

    const good = request(r, T.OUT, 4, [{ length: 512 }], false);
    const data = pattern(512, 4);
    r.bench.ram.set(data, good.dataPhys[0]!);
    r.driver.notify(0);
    r.bench.run();
    expect(good.status()).toBe(ST.OK);
    same(r.disk.subarray(4 * 512, 5 * 512), data);
    expect(r.blk.stats).toMatchObject({ writes: 2, bytesWritten: 512, dataFaults: 1 });
  });

  it("a data buffer the IOMMU maps read-only: the IN fails with IOERR, the buffer unwritten, the device goes on", () => {
    const r = rig();
    const req = request(r, T.IN, 0, [{ length: 512, write: true, ownPage: true }], false);
    r.bench.map(req.dataPhys[0]!, 512, 1n); // read only (its page alone)
    const ram = r.bench.ram.slice();
    r.driver.notify(0);
    r.bench.run();
    same(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512), ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512));
    expect(req.status()).toBe(ST.IOERR);
    expect(r.ring.usedIdx).toBe(1);
    expect(r.driver.status & S.NEEDS_RESET).toBe(0);
    expect(r.blk.stats).toMatchObject({ dmaFaults: 1, dataFaults: 1, deviceErrors: 0 });
    expect(r.blk.stats.lastDataFault?.what).toMatch(/write to buffer 1/);
  });

  it("a fault in the second data buffer: the first one got its sectors, the request IOERR", () => {
    const r = rig();
    const req = request(r, T.IN, 8, [{ length: 512, write: true }, { length: 512, write: true, mapped: false }]);
    r.bench.run();
    expect(req.status()).toBe(ST.IOERR);
    same(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512), r.disk.subarray(8 * 512, 9 * 512));
    expect(r.ring.usedElem(0)).toEqual({ id: req.head, len: 1 });
    expect(r.blk.stats).toMatchObject({ bytesRead: 0, dataFaults: 1, lastDataFault: { what: expect.stringMatching(/write to buffer 2/) } });
  });

  it("a GET_ID whose buffer is unmapped: IOERR, and the batch around it is served", () => {
    const r = rig();
    const first = request(r, T.IN, 1, [{ length: 512, write: true }], false);
    const id = request(r, T.GET_ID, 0, [{ length: 20, write: true, mapped: false }], false);
    const flush = request(r, T.FLUSH, 0);
    r.bench.run();
    expect([first.status(), id.status(), flush.status()]).toEqual([ST.OK, ST.IOERR, ST.OK]);
    expect(r.ring.usedIdx).toBe(3);
    expect(r.blk.stats).toMatchObject({ requests: 3, getIds: 1, flushes: 1, dataFaults: 1, ioErrors: 1, interrupts: 1 });
  });

  it("a data buffer at 0xFFFF_FFFF_FFFF_F000 (above 2^53): IOERR, and the unit's fault record holds that exact page", () => {
    const r = rig();
    const unit = r.bench.m.device;
    const high = 0xffff_ffff_ffff_f000n;
    const req = request(r, T.IN, 4, [{ length: 512, write: true, iova: high }]);
    r.bench.run();
    expect(req.status()).toBe(ST.IOERR);
    expect(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512).every((b) => b === 0)).toBe(true); // nothing moved
    expect(r.ring.usedElem(0)).toEqual({ id: req.head, len: 1 });
    expect(r.driver.status & S.NEEDS_RESET).toBe(0);
    expect(r.blk.stats).toMatchObject({ dataFaults: 1, deviceErrors: 0, lastDataFault: { address: high, what: expect.stringMatching(/write to buffer 1/) } });
    // FRCD0 where the unit's CAP.FRO puts it; its low qword's FI is the page, to the bit (a number would round it to 2^64).
    expect(Number(getField(unit.readRegister(Reg.CAP, 8), Cap.FRO)) * 16).toBe(FRCD_OFFSET);
    expect(unit.readRegister(FRCD_OFFSET, 8) & FrcdLo.FI).toBe(high);
    expect(faultRecord(r)).toMatchObject({ fault: true, page: high, sid: SID, read: false });


    // An address a double cannot hold (it would round up into the next page): still exact.
    unit.writeRegister(FRCD_OFFSET + 8, 8, 1n << 63n); // the driver's fault handler clears F
    const odd = request(r, T.IN, 4, [{ length: 512, write: true, iova: 0xffff_ffff_ffff_efffn }]);
    r.bench.run();
    expect(odd.status()).toBe(ST.IOERR);
    expect(r.blk.stats.lastDataFault).toMatchObject({ address: 0xffff_ffff_ffff_efffn });
    expect(faultRecord(r)).toMatchObject({ fault: true, page: 0xffff_ffff_ffff_e000n, sid: SID, read: false });

    // Data and status byte in one writable descriptor up there: the status byte is at the
    // descriptor's address + 512, exact too; with no way to answer, the device needs a reset.
    const both = request(r, T.IN, 4, [], false);
    const view = new DataView(r.bench.ram.buffer);
    const slot = r.ring.desc + 16 * ((both.head + 1) % r.ring.size); // the status descriptor: data and status from here
    view.setBigUint64(slot, high, true);
    view.setUint32(slot + 8, 512 + 1, true);
    r.driver.notify(0);
    r.bench.run();
    expect(both.status()).toBe(0xee);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.transport.stats.lastQueueFailure).toMatchObject({ kind: "dma", address: high + 512n, what: expect.stringMatching(/write to buffer 1/) });
    expect(r.blk.stats).toMatchObject({ dataFaults: 3, deviceErrors: 1 });
  });

  it("records each fault as the unit does: the second after the driver cleared the first record", () => {
    const r = rig();
    const unit = r.bench.m.device;
    const a = request(r, T.IN, 0, [{ length: 512, write: true, mapped: false }]);
    r.bench.run();
    expect(faultRecord(r)).toMatchObject({ fault: true, page: BigInt(r.bench.iova(a.dataPhys[0]!)), read: false });
    unit.writeRegister(FRCD_OFFSET + 8, 8, 1n << 63n); // the driver's fault handler: F is write-1-to-clear
    expect(faultRecord(r).fault).toBe(false);
    const b = request(r, T.OUT, 0, [{ length: 512, mapped: false }]);
    r.bench.run();
    expect([a.status(), b.status()]).toEqual([ST.IOERR, ST.IOERR]);
    expect(faultRecord(r)).toMatchObject({ fault: true, page: BigInt(r.bench.iova(b.dataPhys[0]!)), read: true, sid: SID });
    expect(unit.stats).toMatchObject({ faultsRecorded: 2, faultsDropped: 0 });
    expect(r.blk.stats).toMatchObject({ dataFaults: 2, dmaFaults: 2, deviceErrors: 0 });
  });

  it("a data fault and then a status byte the IOMMU does not map: DEVICE_NEEDS_RESET, nothing marked used", () => {
    const r = rig();
    const req = request(r, T.IN, 0, [{ length: 512, write: true, mapped: false }], false);
    unmapIova(r, BigInt(r.bench.iova(req.statusPhys))); // the status byte starts a page of its own after the unmapped buffer
    r.driver.notify(0);
    r.bench.run();
    expect(req.status()).toBe(0xee);
    expect(r.ring.usedIdx).toBe(0);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.stats).toMatchObject({ dataFaults: 1, dmaFaults: 2, deviceErrors: 1, lastError: expect.stringMatching(/write to buffer 2/) });
  });
});

describe("virtio-blk: the fault-injection hook (beforeRequest)", () => {
  it("sees each request after its header was read, before its data moves; its returned function runs after the status", () => {
    const seen: string[] = [];
    const r = rig();
    const req = request(r, T.IN, 3, [{ length: 512, write: true }], false);
    r.blk.beforeRequest = (request) => {
      seen.push(`before ${request.type} ${request.sector} status=${r.bench.ram[req.statusPhys]!.toString(16)}`);
      expect(request.head).toBe(req.head);
      expect(request.buffers).toEqual([
        { address: BigInt(r.bench.iova(req.header)), length: 16, writable: false },
        { address: BigInt(r.bench.iova(req.dataPhys[0]!)), length: 512, writable: true },
        { address: BigInt(r.bench.iova(req.statusPhys)), length: 1, writable: true },
      ]);
      return () => seen.push(`after status=${r.bench.ram[req.statusPhys]} used=${r.ring.usedIdx}`);
    };
    r.driver.notify(0);
    r.bench.run();
    expect(seen).toEqual(["before 0 3 status=ee", "after status=0 used=0"]);
    expect(r.ring.usedIdx).toBe(1);
  });

  it("lets a test unmap a data buffer just before the device uses it, and map it back after", () => {
    const r = rig();
    const req = request(r, T.IN, 0, [{ length: 512, write: true, ownPage: true }], false);
    // The buffer was used once, so the unit's IOTLB holds its translation: the hook must invalidate.
    expect(r.bench.m.device.dmaWrite(SID, BigInt(r.bench.iova(req.dataPhys[0]!)), new Uint8Array(1)).ok).toBe(true);
    let restored = false;
    r.blk.beforeRequest = (request) => {
      const mapBack = unmapIova(r, request.buffers[1]!.address);
      return () => {
        mapBack();
        restored = true;
      };
    };
    r.driver.notify(0);
    r.bench.run();
    expect(req.status()).toBe(ST.IOERR);
    expect(restored).toBe(true);
    expect(r.blk.stats).toMatchObject({ dataFaults: 1, deviceErrors: 0 });
    r.blk.beforeRequest = undefined;
    const again = request(r, T.IN, 0, [{ length: 512, write: true }]);
    r.bench.run();
    expect(again.status()).toBe(ST.OK);
    expect(r.bench.m.device.dmaWrite(SID, BigInt(r.bench.iova(req.dataPhys[0]!)), new Uint8Array(1)).ok).toBe(true); // mapped back
  });
});
