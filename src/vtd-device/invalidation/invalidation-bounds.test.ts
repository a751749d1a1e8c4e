/**
 * Page-selective addresses with bits above MGAW, the device-TLB range a descriptor names, the
 * bound on outstanding device-TLB invalidations, the work one tail write can cause, and the clock.
 */
import { describe, expect, it } from "vitest";
import { Fsts, IOTLB_OFFSET, IVA_OFFSET, Iotlb, Reg, fieldMask, setField } from "../../spec/index.ts";
import { VtdDevice, GuestRam } from "../index.ts";
import { enableTranslation, machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";

const STATUS = 0x90_0000;
const SID = 0x20;
const OLD = 0x20_0000, NEW = 0x30_0000;

/** A page at `iova` mapped to OLD and cached in the IOTLB, then remapped to NEW without an invalidation. */
function staleMapping(awBits: 39 | 48, iova: number) {
  const m = machine({ awBits });
  const root = m.tables.context(SID, { did: 4, aw: awBits === 48 ? 2 : 1 });
  enableTranslation(m);
  const levels = awBits === 48 ? 4 : 3;
  const pte = m.tables.map(root, levels, iova, OLD, R | W);
  m.ram.direct[OLD] = 1;
  m.ram.direct[NEW] = 2;
  const read = () => {
    const b = new Uint8Array(1);
    return m.device.dmaRead(SID, BigInt(iova), b).ok ? b[0] : -1;
  };
  expect(read()).toBe(1);
  m.ram.write64(pte, BigInt(NEW) | 3n);
  expect(read()).toBe(1); // still cached
  return { m, read };
}

describe("page-selective invalidation: address bits at and above MGAW are ignored", () => {
  for (const awBits of [39, 48] as const) {
    for (const high of [BigInt(awBits), 63n]) {
      it(`IVA with bit ${high} set (MGAW ${awBits}): the page is invalidated`, () => {
        const { m, read } = staleMapping(awBits, 0x5000);
        m.device.writeRegister(IVA_OFFSET, 8, 0x5000n | (1n << high));
        const command = setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 3), Iotlb.DID, 4);
        m.device.writeRegister(IOTLB_OFFSET, 8, command);
        expect(m.device.readRegister(IOTLB_OFFSET, 8) >> 57n & 3n).toBe(3n); // IAIG: page-selective done
        expect(read()).toBe(2);
      });

      it(`IOTLB descriptor with ADDR bit ${high} set (MGAW ${awBits}): the page is invalidated`, () => {
        const { m, read } = staleMapping(awBits, 0x5000);
        new Queue(m).enable().submit(desc.iotlbPage(4, 0x5000n | (1n << high)));
        expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
        expect(read()).toBe(2);
      });
    }
  }
});

function atsMachine(options: { latency?: number; pending?: number; perEndpoint?: number } = {}) {
  const m = machine({
    deviceIotlb: true, deviceIotlbLatencyMs: options.latency ?? 0,
    ...(options.pending ? { deviceIotlbPendingInvalidations: options.pending } : {}),
  }, 128 << 20);
  const root = m.tables.context(SID, { did: 1, tt: 1, aw: 2 });
  enableTranslation(m);
  const fill = (pages: number, base = 0x4000_0000) => {
    for (let i = 0; i < pages; i++) {
      m.tables.map(root, 4, base + i * 4096, OLD, R | W);
      m.device.dmaRead(SID, BigInt(base + i * 4096), new Uint8Array(1));
    }
  };
  return { m, fill };
}

describe("the range of a device-TLB descriptor", () => {
  it("S = 1 with address bits 62:12 set (Linux's whole-space flush) covers every page", () => {
    const { m, fill } = atsMachine();
    fill(3);
    expect(m.device.deviceTlbs.entries(SID)).toBe(3);
    new Queue(m).enable().submit(desc.deviceTlb(SID, 0x7fff_ffff_ffff_f000n, true));
    expect(m.device.deviceTlbs.entries(SID)).toBe(0);
  });

  it("S = 1 with bits 20:12 set names 2 MiB at the aligned address; the neighbours stay", () => {
    const { m, fill } = atsMachine();
    fill(1, 0x4000_0000 - 4096);
    fill(2, 0x4000_0000);
    fill(1, 0x4020_0000);
    new Queue(m).enable().submit(desc.deviceTlb(SID, 0x4000_0000n | 0xff000n, true));
    expect(m.device.deviceTlbs.entries(SID)).toBe(2);
  });
});

describe("outstanding device-TLB invalidations are bounded", () => {
  it("with every place taken the queue stops on the next device-TLB descriptor until an answer frees one", () => {
    const { m, fill } = atsMachine({ latency: 100, pending: 4 });
    fill(1);
    const q = new Queue(m).enable();
    q.submit(...Array.from({ length: 10 }, (_, i) => desc.deviceTlb(SID, BigInt(i * 4096))), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    expect(q.head).toBe(4);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    m.device.advanceTime(100);
    expect(q.head).toBe(8);
    m.device.advanceTime(100);
    expect(q.head).toBe(10); // the wait waits for the last two
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(100);
    expect(q.head).toBe(11);
    expect(m.ram.read32(STATUS)).toBe(1);
    expect(m.device.stats.deviceIotlbInvalidations).toBe(10);
  });
});

describe("one tail write of a full queue (QS = 7: 32767 descriptors) costs bounded work", () => {
  const N = 32767;
  function fullQueue(m: ReturnType<typeof machine>, make: (i: number) => [bigint, bigint]) {
    const q = new Queue(m, 0x100_0000, 7).enable();
    for (let i = 0; i < N; i++) {
      const [lo, hi] = make(i);
      m.ram.write64(q.base + i * 16, lo);
      m.ram.write64(q.base + i * 16 + 8, hi);
    }
    return q;
  }

  it("device-TLB descriptors answered at once: each visits at most deviceIotlbEntriesPerEndpoint entries", () => {
    const { m, fill } = atsMachine();
    fill(300);
    const perEndpoint = m.device.deviceTlbs.perEndpoint;
    expect(m.device.deviceTlbs.entries(SID)).toBe(perEndpoint); // 300 fills, the oldest went
    // 8 MiB ranges that miss every cached page: nothing is dropped, every descriptor looks.
    fullQueue(m, (i) => desc.deviceTlb(SID, (BigInt(i) << 24n) + 0x10_0000_0000n + 0x3f_f000n, true));
    const before = m.device.deviceTlbs.invalidationWork;
    m.device.writeRegister(Reg.IQT, 8, BigInt(N) << 4n);
    // The tail write stops at the queue's work budget; the clock brings the rest (queue-work-budget.test.ts).
    for (let step = 0; step < 100 && m.device.stats.descriptorsProcessed < N; step++) m.device.advanceTime(0.001);
    expect(m.device.stats.descriptorsProcessed).toBe(N);
    expect(m.device.deviceTlbs.entries(SID)).toBe(perEndpoint);
    expect(m.device.deviceTlbs.invalidationWork - before).toBeLessThanOrEqual(N * perEndpoint);
  });

  it("device-TLB descriptors answered later: the tail write sends at most deviceIotlbPendingInvalidations, each answer is O(1)", () => {
    const { m, fill } = atsMachine({ latency: 1000 });
    fill(1, 0x7000_0000 - 4096); // the last page the descriptors name
    fullQueue(m, (i) => desc.deviceTlb(SID, BigInt(0x7000_0000 - N * 4096 + i * 4096)));
    m.device.writeRegister(Reg.IQT, 8, BigInt(N) << 4n);
    const limit = m.device.options.deviceIotlbPendingInvalidations;
    expect(m.device.stats.descriptorsProcessed).toBe(limit);
    m.device.advanceTime(1000);
    expect(m.device.stats.descriptorsProcessed).toBe(2 * limit);
    m.device.advanceTime(1000 * Math.ceil(N / limit));
    expect(m.device.stats.descriptorsProcessed).toBe(N);
    expect(m.device.deviceTlbs.entries(SID)).toBe(0);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
  });
});

describe("the clock", () => {
  it("advanceTime(Infinity) saturates at 2^50 ms: finite, and the queue still runs afterwards", () => {
    const { m, fill } = atsMachine({ latency: 60_000 });
    fill(1);
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(SID, 0x4000_0000n), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(Infinity);
    expect(m.device.now).toBe(2 ** 50);
    expect(m.ram.read32(STATUS)).toBe(1);
    // At the limit an answer is due at once; the clock stays finite.
    q.submit(desc.deviceTlb(SID, 0x4000_0000n), desc.wait({ sw: true, data: 2, address: BigInt(STATUS) }));
    m.device.advanceTime(5);
    expect(m.device.now).toBe(2 ** 50);
    expect(m.ram.read32(STATUS)).toBe(2);
  });

  it("NaN, negative and zero steps do nothing; a huge finite step saturates too", () => {
    const m = machine();
    m.device.advanceTime(7);
    for (const step of [NaN, -1, -Infinity, 0]) m.device.advanceTime(step);
    expect(m.device.now).toBe(7);
    m.device.advanceTime(1e300);
    expect(m.device.now).toBe(2 ** 50);
    m.device.advanceTime(Number.MAX_VALUE);
    expect(Number.isFinite(m.device.now)).toBe(true);
  });
});

describe("device-TLB options", () => {
  const memory = new GuestRam(1 << 20);
  it("a bad value is an error naming the option", () => {
    expect(() => new VtdDevice({ memory, deviceIotlbEntries: 1000 })).toThrow(/option deviceIotlbEntries/);
    expect(() => new VtdDevice({ memory, deviceIotlbEntries: 64, deviceIotlbEntriesPerEndpoint: 65 })).toThrow(/option deviceIotlbEntriesPerEndpoint/);
    expect(() => new VtdDevice({ memory, deviceIotlbPendingInvalidations: 0 })).toThrow(/option deviceIotlbPendingInvalidations/);
    expect(() => new VtdDevice({ memory, deviceIotlbPendingInvalidations: 1.5 })).toThrow(/option deviceIotlbPendingInvalidations/);
  });

  it("the device-TLBs take their size from the options", () => {
    const unit = new VtdDevice({ memory, deviceIotlb: true, deviceIotlbEntries: 64, deviceIotlbEntriesPerEndpoint: 8 });
    expect([unit.deviceTlbs.capacity, unit.deviceTlbs.perEndpoint]).toEqual([64, 8]);
  });

  it("an ITE still raises with the bounded structures", () => {
    const m = machine({ deviceIotlb: true, deviceIotlbLatencyMs: 2000, deviceIotlbTimeoutMs: 1000 });
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(SID, 0n));
    m.device.advanceTime(1000);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.ITE);
  });
});
