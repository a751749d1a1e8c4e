import { describe, expect, it } from "vitest";
import { eduPciIdentity } from "./edu.ts";
import { buildConfigSpace, PciCommand, PciConfigSpace, PciReg, PciStatus } from "./pci-config.ts";

function eduConfig(): PciConfigSpace {
  const identity = eduPciIdentity(0xfea0_0000);
  const { bytes, writable } = buildConfigSpace(identity);
  return new PciConfigSpace(bytes, writable, identity);
}

describe("PCI config space", () => {
  it("starts with edu's identity, a fixed BAR0 and an MSI capability at 0x40", () => {
    const config = eduConfig();
    expect(config.read32(PciReg.VENDOR_ID)).toBe(0x11e8_1234);
    expect(config.read32(PciReg.REVISION_ID)).toBe(0x00ff_0010);
    expect(config.read32(PciReg.BAR0)).toBe(0xfea0_0000);
    expect(config.read32(PciReg.COMMAND) >>> 16).toBe(PciStatus.CAPABILITIES_LIST);
    expect(config.bytes[PciReg.CAPABILITIES_POINTER]).toBe(0x40);
    expect(config.read32(0x40)).toBe(0x0080_0005); // MSI, last capability, 64-bit, disabled
    expect(config.interruptPin).toBe(1);
  });

  it("keeps read-only fields read-only and takes a 32-bit command write", () => {
    const config = eduConfig();
    config.write(PciReg.VENDOR_ID, 4, 0xdead_beef);
    expect(config.read32(PciReg.VENDOR_ID)).toBe(0x11e8_1234);
    config.write(PciReg.COMMAND, 4, 0xffff_ffff);
    expect(config.command).toBe(0x0547);
    expect(config.busMaster && config.memorySpace && config.intxDisabled).toBe(true);
    expect(config.read32(PciReg.COMMAND) >>> 16).toBe(PciStatus.CAPABILITIES_LIST);
    config.write(PciReg.COMMAND, 2, PciCommand.MEMORY_SPACE);
    expect(config.command).toBe(PciCommand.MEMORY_SPACE);
  });

  it("answers BAR sizing with the size mask and takes an aligned address, as a BIOS programs it", () => {
    const config = eduConfig();
    expect(config.barAddress(0)).toBe(0xfea0_0000);
    config.write(PciReg.BAR0, 4, 0xffff_ffff);
    expect(config.read32(PciReg.BAR0)).toBe(0xfff0_0000); // 1 MiB, 32-bit non-prefetchable memory
    config.write(PciReg.BAR0, 4, 0xc01f_345f); // bits below the size and the type bits stay 0
    expect(config.read32(PciReg.BAR0)).toBe(0xc010_0000);
    expect(config.barAddress(0)).toBe(0xc010_0000);
    config.write(PciReg.BAR0 + 3, 1, 0xfe); // byte writes merge into the dword
    config.write(PciReg.BAR0 + 2, 1, 0xb0);
    expect(config.barAddress(0)).toBe(0xfeb0_0000);
    config.write(PciReg.BAR0 + 2, 2, 0xffff);
    expect(config.read32(PciReg.BAR0)).toBe(0xfff0_0000);
    config.write(PciReg.BAR0 + 4, 4, 0xffff_ffff); // no BAR1
    expect(config.read32(PciReg.BAR0 + 4)).toBe(0);
    expect(config.barAddress(1)).toBeUndefined();
  });

  it("sizes a 16 KiB BAR to 0xffffc000", () => {
    const identity = { ...eduPciIdentity(0xfeb1_0000), bars: [{ index: 2, address: 0xfeb1_4000, size: 0x4000 }] };
    const { bytes, writable } = buildConfigSpace(identity);
    const config = new PciConfigSpace(bytes, writable, identity);
    expect(config.read32(PciReg.BAR0 + 8)).toBe(0xfeb1_4000);
    expect(config.read32(PciReg.BAR0)).toBe(0);
    config.write(PciReg.BAR0 + 8, 4, 0xffff_ffff);
    expect(config.read32(PciReg.BAR0 + 8)).toBe(0xffff_c000);
    config.write(PciReg.BAR0 + 8, 4, 0xfe80_6000);
    expect(config.barAddress(2)).toBe(0xfe80_4000);
  });

  it("chains capabilities in offset order after the pointer, read-only", () => {
    const body = (...b: number[]) => new Uint8Array(b);
    const identity = {
      ...eduPciIdentity(0xfea0_0000),
      capabilities: [
        { offset: 0x60, id: 0x09, body: body(4, 0xaa) },
        { offset: 0x50, id: 0x09, body: body(4, 0xbb) },
      ],
    };
    const { bytes, writable } = buildConfigSpace(identity);
    const config = new PciConfigSpace(bytes, writable, identity);
    expect(config.bytes[PciReg.CAPABILITIES_POINTER]).toBe(0x40);
    expect(config.read32(0x40) & 0xffff).toBe(0x5005); // MSI -> 0x50
    expect(config.read32(0x50)).toBe(0xbb04_6009); // vendor -> 0x60
    expect(config.read32(0x60)).toBe(0xaa04_0009); // vendor, last
    config.write(0x50, 4, 0xffff_ffff);
    config.write(0x62, 1, 0);
    expect(config.read32(0x50)).toBe(0xbb04_6009);
    expect(config.read32(0x60)).toBe(0xaa04_0009);
  });

  it("refuses capabilities that overlap, are misplaced or do not fit", () => {
    const build = (offset: number, length: number) =>
      buildConfigSpace({ ...eduPciIdentity(0xfea0_0000), capabilities: [{ offset, id: 0x09, body: new Uint8Array(length) }] });
    expect(() => build(0x44, 2)).toThrow(/0x44: overlaps the capability before it \(which ends at 0x4e\)/);
    expect(() => build(0x3c, 2)).toThrow(/dword aligned and at least 0x40/);
    expect(() => build(0x52, 2)).toThrow(/dword aligned/);
    expect(() => build(0xf8, 8)).toThrow(/10 bytes do not fit/);
    expect(() => build(0x50, 2)).not.toThrow();
  });

  it("refuses BARs that are not powers of two, misaligned or given twice", () => {
    const withBars = (bars: { index: number; address: number; size: number }[]) => () => buildConfigSpace({ ...eduPciIdentity(0), bars });
    expect(withBars([{ index: 0, address: 0xfeb0_0000, size: 0x3000 }])).toThrow(/BAR0: size 0x3000 must be a power of two/);
    expect(withBars([{ index: 1, address: 0xfeb0_2000, size: 0x4000 }])).toThrow(/BAR1: address 0xfeb02000 must be a 32-bit address aligned/);
    expect(withBars([{ index: 6, address: 0, size: 16 }])).toThrow(/BAR index 6 is not 0..5/);
    expect(withBars([{ index: 0, address: 0, size: 16 }, { index: 0, address: 16, size: 16 }])).toThrow(/BAR0 is given twice/);
  });

  it("decodes the MSI enable bit, 64-bit address and data as written", () => {
    const config = eduConfig();
    expect(config.msiEnabled).toBe(false);
    config.write(0x44, 4, 0xfee0_1003);
    config.write(0x48, 4, 0x1);
    config.write(0x4c, 2, 0x4041);
    config.write(0x42, 2, 0xffff);
    expect(config.msi).toEqual({ enabled: true, address: 0x1_fee0_1000n, data: 0x4041 });
    expect(config.msiEnabled).toBe(true);
    expect(config.read32(0x40) >>> 16).toBe(0x00f1); // 64-bit, MME writable, enabled; MMC stays 0
  });

  it("reflects the INTx level in the status register", () => {
    const config = eduConfig();
    config.setInterruptStatus(true);
    expect((config.read32(PciReg.COMMAND) >>> 16) & PciStatus.INTERRUPT).toBe(PciStatus.INTERRUPT);
    config.setInterruptStatus(false);
    expect((config.read32(PciReg.COMMAND) >>> 16) & PciStatus.INTERRUPT).toBe(0);
  });
});
