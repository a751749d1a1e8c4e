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

  it("answers BAR sizing with the size mask and otherwise keeps the fixed address", () => {
    const config = eduConfig();
    config.write(PciReg.BAR0, 4, 0xffff_ffff);
    expect(config.read32(PciReg.BAR0)).toBe(0xfff0_0000);
    config.write(PciReg.BAR0, 4, 0xc000_0000);
    expect(config.read32(PciReg.BAR0)).toBe(0xfea0_0000);
    config.write(PciReg.BAR0 + 4, 4, 0xffff_ffff); // no BAR1
    expect(config.read32(PciReg.BAR0 + 4)).toBe(0);
  });

  it("decodes the MSI enable bit, 64-bit address and data as written", () => {
    const config = eduConfig();
    config.write(0x44, 4, 0xfee0_1003);
    config.write(0x48, 4, 0x1);
    config.write(0x4c, 2, 0x4041);
    config.write(0x42, 2, 0xffff);
    expect(config.msi).toEqual({ enabled: true, address: 0x1_fee0_1000n, data: 0x4041 });
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
