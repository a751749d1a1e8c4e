/**
 * What the device cannot answer stops it (Virtio 1.2 §2.1.2: DEVICE_NEEDS_RESET, and a
 * configuration change interrupt after DRIVER_OK): a DMA fault on the available ring, the
 * descriptor table, the used ring, a request's header or its status byte, and a driver's ring
 * mistakes. Never a throw, whatever the registers and the ring hold.
 */
import { describe, expect, it } from "vitest";
import { Fsts, Reg } from "../../spec/registers.ts";
import { Bar, Common, firstDifference, S, TestRing } from "../../../test/support/virtio-bench.ts";
import { FEATURES, request, rig, ST, T, unmapIova, type Rig } from "../../../test/support/virtio-blk-rig.ts";

/** Brings the device up on `ring`, with the descriptor table or the used ring at another IOVA. */
function startWith(r: Rig, ring: TestRing, moved: { desc?: bigint; used?: bigint }): void {
  r.driver.negotiate(FEATURES);
  r.driver.setupQueue(0, ring, { enable: false });
  for (const [offset, iova] of [[Common.Q_DESC, moved.desc], [Common.Q_USED, moved.used]] as const) {
    if (iova === undefined) continue;
    r.driver.write(Bar.COMMON + offset, 4, iova & 0xffff_ffffn);
    r.driver.write(Bar.COMMON + offset + 4, 4, iova >> 32n);
  }
  r.driver.write16AsBytes(Bar.COMMON + Common.Q_ENABLE, 1);
  r.driver.addStatus(S.DRIVER_OK);
  r.ring = ring;
}

/** An IOVA the unit does not map: a page of its own, never mapped. */
function unmappedIova(r: Rig): bigint {
  r.bench.nextPage();
  const phys = r.bench.alloc(0x1000, 0x1000, false);
  return BigInt(r.bench.iova(phys));
}

function expectStopped(r: Rig, message: RegExp): void {
  expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
  expect(r.blk.stats).toMatchObject({ deviceErrors: 1, dataFaults: 0, lastError: expect.stringMatching(message) });
  expect(r.blk.transport.stats.lastQueueFailure).toMatchObject({ kind: "dma", result: { ok: false } });
  expect(r.driver.readIsr()).toBe(2); // a configuration change interrupt
}

describe("virtio-blk: DMA faults on the rings and ring errors stop the device", () => {
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
        // 8 bytes as v86 delivers them: two dwords (the test driver splits them).
        const access = random() < 0.5 ? () => r.driver.write(offset, size, value) : size === 8 ? () => r.driver.read64(offset) : () => r.blk.readMmio(offset, size);
        expect(access).not.toThrow();
        if (i % 50 === 0) expect(() => r.bench.run()).not.toThrow();
      }
      expect(() => r.bench.run()).not.toThrow();
    }
  });
});

describe("virtio-blk: a DMA fault on what a request cannot do without stops the device", () => {
  it("the descriptor table unmapped: DEVICE_NEEDS_RESET, nothing served", () => {
    const r = rig({ start: false });
    const ring = new TestRing(r.bench, 16);
    startWith(r, ring, { desc: unmappedIova(r) });
    request(r, T.IN, 0, [{ length: 512, write: true }]);
    r.bench.run();
    expectStopped(r, /read of the descriptor/);
    expect(r.blk.stats).toMatchObject({ requests: 0, dmaFaults: 1 });
    expect(r.ring.usedIdx).toBe(0);
  });

  it("the used ring unmapped: the request is served, then DEVICE_NEEDS_RESET, nothing marked used", () => {
    const r = rig({ start: false });
    const ring = new TestRing(r.bench, 16);
    startWith(r, ring, { used: unmappedIova(r) });
    const req = request(r, T.IN, 0, [{ length: 512, write: true }]);
    r.bench.run();
    expect(req.status()).toBe(ST.OK);
    expectStopped(r, /write of the used ring element/);
    expect(r.blk.stats).toMatchObject({ requests: 1, dmaFaults: 1 });
    expect(r.ring.usedIdx).toBe(0);
  });

  it("a request header unmapped: DEVICE_NEEDS_RESET, the data buffer and status untouched", () => {
    const r = rig();
    r.bench.nextPage();
    const req = request(r, T.IN, 0, [{ length: 512, write: true, ownPage: true }], false);
    unmapIova(r, BigInt(r.bench.iova(req.header))); // the header starts a page of its own
    r.bench.ram.fill(0x5a, req.dataPhys[0]!, req.dataPhys[0]! + 512);
    r.driver.notify(0);
    r.bench.run();
    expectStopped(r, /read of buffer 0/);
    expect(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512).every((b) => b === 0x5a)).toBe(true);
    expect(req.status()).toBe(0xee);
    expect(r.ring.usedIdx).toBe(0);
  });

  it("a status byte unmapped: the data moves, then DEVICE_NEEDS_RESET, nothing marked used", () => {
    const r = rig();
    const req = request(r, T.IN, 3, [{ length: 512, write: true, ownPage: true }], false);
    unmapIova(r, BigInt(r.bench.iova(req.statusPhys))); // the status byte starts a page of its own
    r.driver.notify(0);
    r.bench.run();
    expectStopped(r, /write to buffer 2/);
    expect(firstDifference(r.bench.ram.subarray(req.dataPhys[0]!, req.dataPhys[0]! + 512), r.disk.subarray(3 * 512, 4 * 512))).toBe(-1);
    expect(r.ring.usedIdx).toBe(0);
    // Served no more until the driver resets the device.
    request(r, T.FLUSH, 0);
    expect(r.bench.scheduled).toHaveLength(0);
  });
});
