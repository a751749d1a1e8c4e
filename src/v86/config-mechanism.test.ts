/**
 * PCI configuration mechanism #1 (ports 0xCF8-0xCFF) as QEMU 10.0's q35 host bridge decodes it:
 * the values below were read on QEMU by test/guests/qemu-written-guest.c, where edu's registers
 * 0x00-0x07 are 34 12 e8 11 03 01 10 00.
 */
import { describe, expect, it } from "vitest";
import { CONFIG_ADDRESS_PORT as CF8, CONFIG_DATA_PORT as CFC, ConfigMechanism } from "./pci-bus.ts";

const SLOT = 4;
const BDF = SLOT << 3;
const ENABLE = 0x8000_0000;
const at = (register: number) => (ENABLE | (SLOT << 11) | register) >>> 0;

function rig() {
  const space = new Uint8Array(256);
  space.set([0x34, 0x12, 0xe8, 0x11, 0x03, 0x01, 0x10, 0x00]);
  const writes: [number, number, number, number][] = [];
  const mechanism = new ConfigMechanism({
    space: (bdf) => (bdf === BDF ? space : undefined),
    write: (bdf, register, size, value) => {
      writes.push([bdf, register, size, value]);
      for (let i = 0; i < size; i++) space[register + i] = (value >>> (8 * i)) & 0xff;
    },
  });
  const select = (address: number) => mechanism.writeAddress(CF8, 4, address);
  return { space, writes, mechanism, select };
}

describe("CONFIG_ADDRESS (0xCF8)", () => {
  it("latches a dword write whole, bits 1:0 included, and returns it on a dword read", () => {
    const { mechanism, select } = rig();
    select(at(0x03));
    expect(mechanism.readAddress(CF8, 4) >>> 0).toBe(at(0x03));
  });

  it("ignores narrower writes; narrower reads are all ones (PCI 3.0: ordinary I/O nothing claims)", () => {
    const { mechanism, select } = rig();
    select(at(0x0a));
    mechanism.writeAddress(CF8, 1, 0x44);
    mechanism.writeAddress(CF8 + 2, 2, 0x0002);
    mechanism.writeAddress(CF8 + 3, 1, 0x01);
    expect(mechanism.readAddress(CF8, 4) >>> 0).toBe(at(0x0a));
    expect([mechanism.readAddress(CF8, 1), mechanism.readAddress(CF8 + 2, 2), mechanism.readAddress(CF8 + 3, 1)]).toEqual([0xff, 0xffff, 0xff]);
  });
});

describe("CONFIG_DATA (0xCFC-0xCFF)", () => {
  it("ORs CONFIG_ADDRESS bits 1:0 with the port's: dword, word and byte reads as on QEMU", () => {
    const { mechanism, select } = rig();
    const dword = (low: number) => (select(at(low)), mechanism.readData(CFC, 4) >>> 0);
    expect([0, 1, 2, 3].map(dword)).toEqual([0x11e81234, 0x0311e812, 0x010311e8, 0x10010311]);
    select(at(1));
    expect([0, 1, 2, 3].map((n) => mechanism.readData(CFC + n, 1))).toEqual([0x12, 0x12, 0x11, 0x11]);
    expect([mechanism.readData(CFC, 2), mechanism.readData(CFC + 2, 2)]).toEqual([0xe812, 0x0311]);
    select(at(2));
    expect([mechanism.readData(CFC, 2), mechanism.readData(CFC + 2, 2)]).toEqual([0x11e8, 0x11e8]);
  });

  it("reads zero past register 0xFF and zero for accesses misaligned to their port", () => {
    const { mechanism, select, space } = rig();
    space[0xff] = 0xab;
    select(at(0xfc) | 3);
    expect(mechanism.readData(CFC, 4)).toBe(0xab);
    expect(mechanism.readData(CFC, 2)).toBe(0xab);
    select(at(0));
    expect([mechanism.readData(CFC + 1, 2), mechanism.readData(CFC + 3, 2), mechanism.readData(CFC + 2, 4)]).toEqual([0, 0, 0]);
  });

  it("answers all ones with the enable bit clear, on another bus, or for an empty slot", () => {
    const { mechanism, select } = rig();
    for (const address of [at(0) & ~ENABLE, at(0) | (1 << 16), (ENABLE | (0x1d << 11)) >>> 0]) {
      select(address);
      expect([mechanism.readData(CFC, 4), mechanism.readData(CFC + 1, 1), mechanism.readData(CFC + 2, 2)]).toEqual([-1, 0xff, 0xffff]);
    }
  });

  it("writes naturally aligned accesses whole and splits the rest into bytes, never past 0xFF", () => {
    const { mechanism, select, writes } = rig();
    select(at(0x3c));
    mechanism.writeData(CFC, 1, 0x5a);
    select(at(0x3c) | 2);
    mechanism.writeData(CFC + 2, 1, 0xa5); // register 0x3E
    select(at(0x0c) | 1);
    mechanism.writeData(CFC, 2, 0xbbaa); // registers 0x0D, 0x0E: unaligned
    mechanism.writeData(CFC, 4, 0x44332211); // 0x0D..0x10
    select(at(0xfc) | 2);
    mechanism.writeData(CFC, 4, 0x44332211); // 0xFE, 0xFF only
    expect(writes).toEqual([
      [BDF, 0x3c, 1, 0x5a],
      [BDF, 0x3e, 1, 0xa5],
      [BDF, 0x0d, 1, 0xaa], [BDF, 0x0e, 1, 0xbb],
      [BDF, 0x0d, 1, 0x11], [BDF, 0x0e, 1, 0x22], [BDF, 0x0f, 1, 0x33], [BDF, 0x10, 1, 0x44],
      [BDF, 0xfe, 1, 0x11], [BDF, 0xff, 1, 0x22],
    ]);
  });

  it("drops writes that are misaligned to their port, disabled, or to nobody", () => {
    const { mechanism, select, writes } = rig();
    select(at(0x08) | 3);
    mechanism.writeData(CFC + 1, 2, 0x2020);
    mechanism.writeData(CFC + 2, 4, 0x2020);
    select(at(0x0c) & ~ENABLE);
    mechanism.writeData(CFC, 1, 1);
    select((ENABLE | (0x1d << 11) | 0x0c) >>> 0);
    mechanism.writeData(CFC, 1, 1);
    expect(writes).toEqual([]);
  });
});
