/**
 * Every IQE cause and its IQERCD.IQEI code (VT-d §11.4.9.9: 1 tail, 2 fetch, 3 type, 4 reserved
 * field, 5 width), what is not an IQE (a status write nothing claims), and IQERCD.ITESID.
 */
import { describe, expect, it } from "vitest";
import { DescriptorType, Fsts, Gcmd, Reg } from "../../spec/index.ts";
import { enableTranslation, machine, R, W } from "../../../test/support/tables.ts";
import { desc, Queue, type Descriptor } from "../../../test/support/queue.ts";

const STATUS = 0x90_0000;
const SID = 0x20;
const iqei = (m: ReturnType<typeof machine>) => Number(m.device.readRegister(Reg.IQERCD, 8) & 0xfn);

describe("IQERCD.IQEI names the cause of each IQE", () => {
  const cases: [string, number, (m: ReturnType<typeof machine>) => Descriptor][] = [
    ["descriptor type 0", 3, () => [0n, 0n]],
    ["descriptor type 6 (PASID-based, scalable mode only)", 3, () => [6n, 0n]],
    ["descriptor type 7 (PASID-based, scalable mode only)", 3, () => [7n, 0n]],
    ["descriptor type 0x15 (high type bits)", 3, () => [0x205n, 0n]],
    ["device-TLB descriptor without ECAP.DT", 3, () => desc.deviceTlb(SID, 0x1000n)],
    ["reserved bit in a context-cache descriptor", 4, () => [desc.contextGlobal()[0] | (1n << 8n), 0n]],
    ["context-cache granularity 0 (reserved encoding)", 4, () => [BigInt(DescriptorType.ContextCache), 0n]],
    ["reserved bit in an IOTLB descriptor (hi bit 7)", 4, () => [desc.iotlbPage(1, 0n)[0], 1n << 7n]],
    ["IOTLB granularity 0 (reserved encoding)", 4, () => [BigInt(DescriptorType.Iotlb), 0n]],
    ["IOTLB AM above MAMV", 4, () => desc.iotlbPage(1, 0n, 19)],
    ["reserved bit in an interrupt-entry-cache descriptor", 4, () => [desc.iec()[0] | (1n << 8n), 0n]],
    ["wait with PD (reserved without ECAP.PDS)", 4, () => [desc.wait({ sw: true })[0] | (1n << 7n), BigInt(STATUS)]],
    ["wait with a reserved status-address bit", 4, () => [desc.wait({ sw: true })[0], BigInt(STATUS) | 1n]],
    ["wait with none of SW, IF, FN", 4, () => desc.wait({})],
  ];
  for (const [name, code, bad] of cases) {
    it(`${name}: IQEI ${code}`, () => {
      const m = machine();
      const q = new Queue(m).enable();
      q.submit(desc.iotlbGlobal(), bad(m));
      expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
      expect(q.head).toBe(1);
      expect(iqei(m)).toBe(code);
    });
  }

  it("a tail beyond the queue: IQEI 1", () => {
    const m = machine();
    new Queue(m).enable();
    m.device.writeRegister(Reg.IQT, 8, 300n << 4n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
    expect(iqei(m)).toBe(1);
  });

  it("a descriptor outside RAM (fetch error): IQEI 2", () => {
    const m = machine();
    new Queue(m, 0x7000_0000).enable();
    m.device.writeRegister(Reg.IQT, 8, 1n << 4n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
    expect(iqei(m)).toBe(2);
  });

  it("IQA.DW = 1 without scalable mode: IQEI 5", () => {
    const m = machine();
    m.device.writeRegister(Reg.IQA, 8, 0x80_0000n | (1n << 11n));
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.QIE);
    m.device.writeRegister(Reg.IQT, 8, 1n << 5n);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.IQE);
    expect(iqei(m)).toBe(5);
  });

  it("the code of a later IQE replaces the earlier one", () => {
    const m = machine();
    const q = new Queue(m).enable();
    q.submit([0n, 0n]);
    expect(iqei(m)).toBe(3);
    m.ram.write64(q.base, desc.iotlbPage(1, 0n, 19)[0]);
    m.ram.write64(q.base + 8, desc.iotlbPage(1, 0n, 19)[1]);
    m.device.writeRegister(Reg.FSTS, 4, Fsts.IQE);
    m.device.writeRegister(Reg.IQT, 8, BigInt(q.tail) << 4n);
    expect(iqei(m)).toBe(4);
  });
});

describe("a wait descriptor whose status address is not RAM", () => {
  it("completes: the write goes nowhere, no IQE, IF still signals, the next descriptor runs", () => {
    const m = machine();
    m.device.writeRegister(Reg.IECTL, 4, 0n);
    const q = new Queue(m).enable();
    q.submit(desc.wait({ sw: true, if: true, data: 0xdead, address: 0x7000_0000n }), desc.wait({ sw: true, data: 7, address: BigInt(STATUS) }));
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(q.head).toBe(2);
    expect(m.ram.read32(STATUS)).toBe(7);
    expect(m.device.readRegister(Reg.ICS, 4)).toBe(1n);
    expect(m.interrupts).toHaveLength(1);
  });

  it("status-address bits at and above the address width are ignored", () => {
    const m = machine({ awBits: 39 });
    const q = new Queue(m).enable();
    q.submit(desc.wait({ sw: true, data: 0x55, address: (1n << 39n) | (1n << 63n) | BigInt(STATUS) }));
    expect(m.ram.read32(STATUS)).toBe(0x55);
  });
});

describe("ITE records the endpoint in IQERCD.ITESID", () => {
  it("bits 47:32 hold the requester id of the invalidation that timed out", () => {
    const m = machine({ deviceIotlb: true, deviceIotlbLatencyMs: 30_000, deviceIotlbTimeoutMs: 10_000 });
    const root = m.tables.context(SID, { did: 1, tt: 1, aw: 2 });
    enableTranslation(m);
    m.tables.map(root, 4, 0x1000, 0x20_0000, R | W);
    const q = new Queue(m).enable();
    q.submit(desc.deviceTlb(SID, 0x1000n), desc.wait({ sw: true, data: 1, address: BigInt(STATUS) }));
    m.device.advanceTime(10_000);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(Fsts.ITE);
    expect((m.device.readRegister(Reg.IQERCD, 8) >> 32n) & 0xffffn).toBe(BigInt(SID));
  });
});
