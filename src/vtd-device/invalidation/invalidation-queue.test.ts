import { describe, expect, it } from "vitest";
import { Fsts, Gcmd, Gsts, Reg } from "../../spec/registers.ts";
import { enableTranslation, gsts, machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue } from "../../../test/support/queue.ts";

const STATUS = 0x90_0000;
const SID = 0x20;

describe("queued invalidation: descriptors", () => {
  it("a tail write processes every descriptor; IQH follows", () => {
    const m = machine({ awBits: 39 });
    const q = new Queue(m).enable();
    expect(gsts(m) & Gsts.QIES).toBe(Gsts.QIES);
    q.submit(desc.contextGlobal(), desc.iotlbGlobal(), desc.contextDomain(3), desc.iotlbDomain(3), desc.contextDevice(SID, 3, 1),
      desc.iotlbPage(3, 0x20_0000n, 9), desc.iec(), desc.wait({ sw: true, data: 0x600d, address: BigInt(STATUS) }));
    expect(q.head).toBe(8);
    expect(m.ram.read32(STATUS)).toBe(0x600d);
    expect(m.device.stats.contextInvalidations).toEqual({ global: 1, domain: 1, device: 1 });
    expect(m.device.stats.iotlbInvalidations).toEqual({ global: 1, domain: 1, page: 1 });
    expect(m.device.stats.interruptEntryCacheInvalidations).toBe(1);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
  });

  it("page-selective descriptors drop exactly the named pages", () => {
    const m = machine({ awBits: 39 });
    const root = m.tables.context(SID, { did: 4 });
    enableTranslation(m);
    for (let i = 0; i < 8; i++) {
      m.tables.map(root, 3, i * 0x1000, 0x20_0000, R | W);
      m.device.dmaRead(SID, BigInt(i * 0x1000), new Uint8Array(1));
    }
    const q = new Queue(m).enable();
    q.submit(desc.iotlbPage(4, 0x4000n, 2));
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(4);
    q.submit(desc.iotlbPage(5, 0n, 2)); // other domain: nothing
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(4);
  });

  it("the queue wraps around", () => {
    const m = machine();
    const q = new Queue(m).enable();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100; i++) q.submit(desc.iotlbGlobal());
    }
    q.submit(desc.wait({ sw: true, data: 7, address: BigInt(STATUS) }));
    expect(q.head).toBe(301 % 256);
    expect(m.ram.read32(STATUS)).toBe(7);
    expect(m.device.stats.descriptorsProcessed).toBe(301);
  });

  it("queue size follows QS: 256 << QS descriptors", () => {
    const m = machine();
    const q = new Queue(m, 0x80_0000, 2).enable();
    for (let i = 0; i < 1000; i++) q.submit(desc.iotlbGlobal());
    expect(q.head).toBe(1000);
  });
});

describe("queued invalidation: the wait descriptor and the completion event", () => {
  it("IF sets ICS.IWC and sends the completion MSI; a second IF while IWC is set sends nothing", () => {
    const m = machine();
    m.device.writeRegister(Reg.IEADDR, 4, 0xfee0_0000n);
    m.device.writeRegister(Reg.IEDATA, 4, 0x51n);
    m.device.writeRegister(Reg.IECTL, 4, 0n);
    const q = new Queue(m).enable();
    q.submit(desc.wait({ if: true }));
    expect(m.device.readRegister(Reg.ICS, 4)).toBe(1n);
    expect(m.interrupts).toEqual([{ address: 0xfee0_0000n, data: 0x51 }]);
    q.submit(desc.wait({ if: true }));
    expect(m.interrupts).toHaveLength(1);
    m.device.writeRegister(Reg.ICS, 4, 1n);
    q.submit(desc.wait({ if: true }));
    expect(m.interrupts).toHaveLength(2);
  });

  it("masked: IP set, sent on unmask; clearing IWC withdraws it", () => {
    const m = machine();
    const q = new Queue(m).enable();
    q.submit(desc.wait({ if: true }));
    expect(m.device.readRegister(Reg.IECTL, 4)).toBe(0xc000_0000n);
    m.device.writeRegister(Reg.IECTL, 4, 0n);
    expect(m.interrupts).toHaveLength(1);
    m.device.writeRegister(Reg.ICS, 4, 1n);
    m.device.writeRegister(Reg.IECTL, 4, 0x8000_0000n);
    q.submit(desc.wait({ if: true }));
    m.device.writeRegister(Reg.ICS, 4, 1n);
    expect(m.device.readRegister(Reg.IECTL, 4)).toBe(0x8000_0000n);
    m.device.writeRegister(Reg.IECTL, 4, 0n);
    expect(m.interrupts).toHaveLength(1);
  });

  it("SW and IF together are valid (QEMU aborted on this until 2025)", () => {
    const m = machine();
    const q = new Queue(m).enable();
    q.submit(desc.wait({ sw: true, if: true, fn: true, data: 0xabcd, address: BigInt(STATUS) }));
    expect(m.ram.read32(STATUS)).toBe(0xabcd);
    expect(m.device.readRegister(Reg.ICS, 4)).toBe(1n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
  });
});

describe("queued invalidation: errors", () => {
  const bad: [string, [bigint, bigint]][] = [
    ["unknown type 7", [7n, 0n]],
    ["type 0", [0n, 0n]],
    ["a 256-bit-only PASID type (6)", [6n, 0n]],
    ["reserved bit in a context-cache descriptor", [desc.contextGlobal()[0] | (1n << 8n), 0n]],
    ["context-cache granularity 0", [1n, 0n]],
    ["reserved bit in an IOTLB descriptor high qword", [desc.iotlbPage(1, 0n)[0], 1n << 7n]],
    ["IOTLB AM above MAMV", desc.iotlbPage(1, 0n, 19)],
    ["device-TLB without ECAP.DT", desc.deviceTlb(SID, 0n)],
    ["wait with none of SW, IF, FN", desc.wait({})],
    ["wait with PD (reserved)", [desc.wait({ sw: true })[0] | (1n << 7n), BigInt(STATUS)]],
  ];
  for (const [name, d] of bad) {
    it(`${name}: IQE, head stays on it, no restart until the next tail write`, () => {
      const m = machine();
      const q = new Queue(m).enable();
      q.submit(desc.iotlbGlobal(), d, desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
      expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
      expect(q.head).toBe(1);
      expect(m.ram.read32(STATUS)).toBe(0);
      expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0xc000_0000n); // fault event pending (masked)
      // Software replaces the bad descriptor and clears IQE: nothing happens until IQT is written.
      m.ram.write64(q.base + 16, desc.iotlbGlobal()[0]);
      m.ram.write64(q.base + 24, 0n);
      m.device.writeRegister(Reg.FSTS, 4, Fsts.IQE);
      expect(m.device.readRegister(Reg.FECTL, 4)).toBe(0x8000_0000n);
      expect(q.head).toBe(1);
      m.device.writeRegister(Reg.IQT, 4, BigInt(q.tail) << 4n);
      expect(q.head).toBe(3);
      expect(m.ram.read32(STATUS)).toBe(1);
    });
  }

  it("a tail beyond the queue is IQE; a tail write while IQE is set is not processed", () => {
    const m = machine();
    const q = new Queue(m).enable();
    m.device.writeRegister(Reg.IQT, 8, 300n << 4n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
    q.tail = 0;
    q.submit(desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    expect(q.head).toBe(0);
    m.device.writeRegister(Reg.FSTS, 4, Fsts.IQE);
    m.device.writeRegister(Reg.IQT, 8, 1n << 4n);
    expect(q.head).toBe(1);
  });

  it("DW = 1 (256-bit descriptors) needs scalable mode: IQE", () => {
    const m = machine();
    m.device.writeRegister(Reg.IQA, 8, 0x80_0000n | (1n << 11n));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.QIE);
    m.device.writeRegister(Reg.IQT, 8, 1n << 5n);
    expect(m.device.readRegister(Reg.FSTS, 4) & Fsts.IQE).toBe(Fsts.IQE);
  });

  it("a queue base outside RAM is IQE (fetch error)", () => {
    const m = machine();
    const q = new Queue(m, 0x7000_0000).enable();
    m.device.writeRegister(Reg.IQT, 8, 1n << 4n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
    expect(q.head).toBe(0);
  });

  it("register-based invalidation while QI is on is refused (CAIG/IAIG 0), never left pending", () => {
    const m = machine();
    new Queue(m).enable();
    m.device.writeRegister(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
    expect(m.device.readRegister(Reg.CCMD, 8)).toBe(1n << 61n);
    m.device.writeRegister(0xf8, 8, (1n << 63n) | (1n << 60n));
    expect(m.device.readRegister(0xf8, 8)).toBe(1n << 60n);
  });
});

describe("timed processing and the device-TLB", () => {
  it("stepped: IQH advances with the unit's clock", () => {
    const m = machine({ queueDescriptorTimeMs: 1 });
    const q = new Queue(m).enable();
    q.submit(desc.iotlbGlobal(), desc.iotlbGlobal(), desc.iotlbGlobal(), desc.wait({ sw: true, data: 9, address: BigInt(STATUS) }));
    expect(q.head).toBe(1);
    m.device.advanceTime(1);
    expect(q.head).toBe(2);
    m.device.advanceTime(1.5);
    expect(q.head).toBe(3);
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(10);
    expect(q.head).toBe(4);
    expect(m.ram.read32(STATUS)).toBe(9);
  });

  function atsMachine(latencyMs: number, timeoutMs?: number) {
    const m = machine({ deviceIotlb: true, deviceIotlbLatencyMs: latencyMs, ...(timeoutMs ? { deviceIotlbTimeoutMs: timeoutMs } : {}) });
    const root = m.tables.context(SID, { did: 1, tt: 1, aw: 2 });
    enableTranslation(m);
    const pte = m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    m.ram.direct[0x20_0000] = 1;
    m.ram.direct[0x30_0000] = 2;
    return { m, pte };
  }
  const readByte = (m: ReturnType<typeof atsMachine>["m"]) => {
    const b = new Uint8Array(1);
    return m.device.dmaRead(SID, 0x1000n, b).ok ? b[0] : -1;
  };

  it("TT=1: the endpoint keeps its translation until a device-TLB invalidation reaches it, 60 s later", () => {
    const { m, pte } = atsMachine(60_000);
    expect(readByte(m)).toBe(1);
    expect(m.device.deviceTlbs.entries(SID)).toBe(1);
    m.ram.write64(pte, 0x30_0000n | 3n);
    const q = new Queue(m).enable();
    q.submit(desc.iotlbPage(1, 0x1000n), desc.deviceTlb(SID, 0x1000n), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    expect(readByte(m)).toBe(1); // the device still uses its own cached translation
    expect(q.head).toBe(2); // the wait is held until the endpoint answers
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(59_999);
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(1);
    expect(m.ram.read32(STATUS)).toBe(1);
    expect(q.head).toBe(3);
    expect(readByte(m)).toBe(2);
  });

  it("an endpoint that does not answer in time raises ITE; the pending wait is aborted; the tail write after clearing ITE resumes", () => {
    const { m } = atsMachine(30_000, 10_000);
    readByte(m);
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(SID, 0x1000n), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    m.device.advanceTime(10_000);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.ITE);
    expect(q.head).toBe(1);
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.advanceTime(30_000);
    expect(m.ram.read32(STATUS)).toBe(0);
    m.device.writeRegister(Reg.FSTS, 4, Fsts.ITE);
    m.device.writeRegister(Reg.IQT, 8, BigInt(q.tail) << 4n);
    expect(m.ram.read32(STATUS)).toBe(1);
  });

  it("QIE cannot be cleared while the queue is busy; it clears once the queue drains", () => {
    const { m } = atsMachine(5_000);
    readByte(m);
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(SID, 0x1000n), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
    expect(gsts(m) & Gsts.QIES).toBe(Gsts.QIES);
    m.device.advanceTime(5_000);
    expect(gsts(m) & Gsts.QIES).toBe(0n);
    expect(q.head).toBe(0);
  });
});
