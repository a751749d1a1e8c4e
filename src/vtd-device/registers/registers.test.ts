import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { EventControl, Fsts, Reg } from "../../spec/registers.ts";
import { machine } from "../../../test/support/tables.ts";

const hex = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;

describe("CAP and ECAP per configuration (as QEMU 10.0 with the same aw-bits, caching-mode and intremap, eim=off)", () => {
  const cases: [object, bigint, bigint][] = [
    [{ awBits: 39 }, 0x00d2008c22260206n, 0xf00f4an],
    [{ awBits: 39, cachingMode: true }, 0x00d2008c22260286n, 0xf00f4an],
    [{ awBits: 48 }, 0x00d2008c222f0606n, 0xf00f4an],
    [{ awBits: 39, coherent: true }, 0x00d2008c22260206n, 0xf00f4bn],
    [{ awBits: 48, interruptRemapping: false }, 0x00d2008c222f0606n, 0xf42n],
  ];
  for (const [options, cap, ecap] of cases) {
    it(JSON.stringify(options), () => {
      const { device } = machine(options);
      expect(hex(device.readRegister(Reg.CAP, 8))).toBe(hex(cap));
      expect(hex(device.readRegister(Reg.ECAP, 8))).toBe(hex(ecap));
    });
  }
  it("reflects rwbf, faultRecords, dmaDrain, deviceIotlb, passThrough", () => {
    const { device } = machine({ awBits: 39, rwbf: true, faultRecords: 8, dmaDrain: false, deviceIotlb: true, passThrough: false });
    const cap = device.readRegister(Reg.CAP, 8);
    expect(cap & 0x10n).toBe(0x10n);
    expect((cap >> 40n) & 0xffn).toBe(7n);
    expect((cap >> 54n) & 3n).toBe(0n);
    expect(device.readRegister(Reg.ECAP, 8)).toBe(0xf00f0en);
    expect(device.registerWindowSize).toBe(0x220 + 8 * 16);
  });
});

describe("register file", () => {
  it("every register reads its reset value, in dwords and qwords", () => {
    const { device } = machine({ awBits: 39 });
    for (const r of device.table) {
      const expected = r.reset & ~r.writeOnly;
      expect(device.readRegister(r.offset, r.width === 64 ? 8 : 4), r.name).toBe(expected);
      if (r.width === 64) {
        expect(device.readRegister(r.offset, 4), `${r.name} low`).toBe(expected & 0xffff_ffffn);
        expect(device.readRegister(r.offset + 4, 4), `${r.name} high`).toBe(expected >> 32n);
      }
    }
    expect(device.readRegister(Reg.VER, 4)).toBe(0x10n);
    expect(device.readRegister(Reg.FECTL, 4)).toBe(0x8000_0000n);
    expect(device.readRegister(Reg.IECTL, 4)).toBe(0x8000_0000n);
  });

  it("plain registers keep exactly their writable bits (all-ones and all-zero writes)", () => {
    const quiet = ["GCMD", "CCMD", "IOTLB", "IQT", "FSTS", "ICS"];
    const { device } = machine({ awBits: 39 });
    for (const r of device.table.filter((r) => !quiet.includes(r.name) && !r.name.startsWith("FRCD"))) {
      const size = r.width === 64 ? 8 : 4;
      const ones = r.width === 64 ? 0xffff_ffff_ffff_ffffn : 0xffff_ffffn;
      device.writeRegister(r.offset, size, ones);
      expect(device.readRegister(r.offset, size), `${r.name} after all-ones`).toBe((r.reset & ~r.writable) | (r.writable & ~r.writeOnly));
      device.writeRegister(r.offset, size, 0n);
      expect(device.readRegister(r.offset, size), `${r.name} after zero`).toBe(r.reset & ~r.writable & ~r.writeOnly);
    }
  });

  it("write-only fields read as zero (GCMD, IVA, CCMD FM/SID)", () => {
    const { device } = machine({ awBits: 39 });
    device.writeRegister(0xf0, 8, 0xffff_ffff_ffff_f07fn);
    expect(device.readRegister(0xf0, 8)).toBe(0n);
    device.writeRegister(Reg.CCMD, 8, 0x0000_0003_ffff_0005n);
    expect(device.readRegister(Reg.CCMD, 8)).toBe(0x5n);
  });

  it("an 8-byte write to FECTL writes FECTL and FEDATA (QEMU aborts here)", () => {
    const { device } = machine();
    device.writeRegister(Reg.FECTL, 8, 0x0000_1234_0000_0000n);
    expect(device.readRegister(Reg.FECTL, 4)).toBe(0n);
    expect(device.readRegister(Reg.FEDATA, 4)).toBe(0x1234n);
    device.writeRegister(Reg.IECTL, 8, 0x0000_5678_8000_0000n);
    expect(device.readRegister(Reg.IECTL, 4)).toBe(0x8000_0000n);
    expect(device.readRegister(Reg.IEDATA, 4)).toBe(0x5678n);
  });

  it("64-bit registers: the low half is stored, the command acts when the high half arrives", () => {
    const { device } = machine();
    device.writeRegister(Reg.CCMD, 4, 0x0000_0000n);
    device.writeRegister(Reg.CCMD + 4, 4, 0xa000_0000n); // ICC | CIRG=global
    const ccmd = device.readRegister(Reg.CCMD, 8);
    expect(ccmd >> 63n).toBe(0n); // ICC cleared
    expect((ccmd >> 59n) & 3n).toBe(1n); // CAIG global
  });

  it("misaligned and odd-sized writes are ignored; reads return the bytes", () => {
    const { device } = machine();
    const events: string[] = [];
    device.trace.subscribe((e) => events.push(e.type));
    device.writeRegister(Reg.FEDATA + 1, 4, 0xffff_ffffn);
    device.writeRegister(Reg.FEDATA, 2 as 4, 0xffffn);
    device.writeRegister(Reg.FEDATA, 1 as 4, 0xffn);
    device.writeRegister(Reg.FEDATA, 8, 0xffff_ffff_ffff_ffffn); // 8-byte at a 4-aligned offset
    expect(device.readRegister(Reg.FEDATA, 4)).toBe(0n);
    expect(events.filter((e) => e === "vtd_reg_ignored")).toHaveLength(4);
    expect(device.readRegister(Reg.VER, 1)).toBe(0x10n);
    expect(device.readRegister(Reg.CAP + 1, 2)).toBe((device.readRegister(Reg.CAP, 8) >> 8n) & 0xffffn);
    expect(device.readRegister(Reg.CAP + 4, 8)).toBe((device.readRegister(Reg.CAP, 8) >> 32n) | ((device.readRegister(Reg.ECAP, 8) & 0xffff_ffffn) << 32n));
  });

  it("offsets outside the file read 0 and never throw", () => {
    const { device } = machine();
    for (const offset of [-8, 0x230, 0xffc, 0x1000, 2 ** 31, Number.NaN]) {
      expect(() => device.writeRegister(offset, 4, 0xffff_ffffn)).not.toThrow();
      expect(device.readRegister(offset, 4)).toBe(0n);
    }
  });

  it("FSTS: RW1C bits clear only when written as 1; PPF and FRI are read-only", () => {
    const { device } = machine();
    device.writeRegister(Reg.FSTS, 4, 0xffff_ffffn);
    expect(device.readRegister(Reg.FSTS, 4)).toBe(0n);
    expect(Fsts.PFO | Fsts.IQE | Fsts.ICE | Fsts.ITE).toBe(0x71n);
  });

  it("reset restores every byte", () => {
    const { device } = machine({ awBits: 48, faultRecords: 4 });
    const before: bigint[] = [];
    for (let o = 0; o < device.registerWindowSize; o += 4) before.push(device.readRegister(o, 4));
    for (let o = 0; o < device.registerWindowSize; o += 4) device.writeRegister(o, 4, 0xffff_ffffn);
    device.writeRegister(Reg.FECTL, 4, 0n);
    device.reset();
    const after: bigint[] = [];
    for (let o = 0; o < device.registerWindowSize; o += 4) after.push(device.readRegister(o, 4));
    expect(after).toEqual(before);
    expect(device.readRegister(Reg.FECTL, 4)).toBe(EventControl.IM);
  });

  it("a guest writing random values everywhere never makes the unit throw", () => {
    const { device } = machine({ faultRecords: 3 });
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 20000; i++) {
      const offset = (next() % 0x260) & ~3;
      const size = next() & 1 ? 8 : 4;
      const value = (BigInt(next()) << 32n) | BigInt(next());
      expect(() => device.writeRegister(offset, size, value)).not.toThrow();
      device.dmaRead(next() & 0xffff, BigInt(next()) * 4096n, new Uint8Array(64));
    }
  });
});

describe("options", () => {
  const memory = new GuestRam(1 << 20);
  it.each([
    [{ awBits: 40 }, /awBits/],
    [{ faultRecords: 0 }, /faultRecords/],
    [{ faultRecords: 257 }, /faultRecords/],
    [{ cachingMode: "yes" }, /cachingMode/],
    [{ iotlbEntries: 100 }, /iotlbEntries/],
    [{ negativeCaching: true }, /negativeCaching/],
    [{ deviceIotlbLatencyMs: 61_000 }, /deviceIotlbLatencyMs/],
  ])("%j is a clear error naming the option", (bad, message) => {
    expect(() => new VtdDevice({ memory, ...(bad as object) })).toThrow(message);
  });
  it("memory is required", () => {
    expect(() => new VtdDevice({} as never)).toThrow(/memory/);
  });
});
