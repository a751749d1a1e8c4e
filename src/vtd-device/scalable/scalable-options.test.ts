import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { Reg } from "../../spec/registers.ts";

const hex = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;
const unit = (options: object) => new VtdDevice({ memory: new GuestRam(1 << 20), ...options });

describe("scalable-mode CAP and ECAP (as QEMU 10.0 with the same properties, intremap=on, eim=off)", () => {
  // Read from qemu-system-x86_64 10.0.2 -device intel-iommu,<properties> over qtest.
  const cases: [string, object, bigint, bigint][] = [
    ["x-scalable-mode=on", { scalableMode: true }, 0x00d2008c222f0606n, 0x0000480080f00f4an],
    ["x-scalable-mode=on,x-flts=on", { scalableMode: true, firstStage: true }, 0x01d2008c222f0606n, 0x0000880000f00f4an],
    ["x-scalable-mode=on,x-pasid-mode=on", { scalableMode: true, pasidBits: 1 }, 0x00d2008c222f0606n, 0x0000490080f00f4an],
    ["x-scalable-mode=on,x-flts=on,x-pasid-mode=on", { scalableMode: true, firstStage: true, pasidBits: 1 }, 0x01d2008c222f0606n, 0x0000890000f00f4an],
    ["x-scalable-mode=on,x-flts=on,caching-mode=on", { scalableMode: true, firstStage: true, cachingMode: true }, 0x01d2008c222f0686n, 0x0000880000f00f4an],
    ["x-scalable-mode=on,aw-bits=39,intremap=off", { scalableMode: true, awBits: 39, interruptRemapping: false }, 0x00d2008c22260206n, 0x0000480080000f42n],
    ["x-scalable-mode=on,pt=off,intremap=off", { scalableMode: true, passThrough: false, interruptRemapping: false }, 0x00d2008c222f0606n, 0x0000480080000f02n],
    ["x-scalable-mode=on,device-iotlb=on,intremap=off", { scalableMode: true, deviceIotlb: true, interruptRemapping: false }, 0x00d2008c222f0606n, 0x0000480080000f46n],
  ];
  for (const [qemu, options, cap, ecap] of cases) {
    it(`${JSON.stringify(options)} = QEMU ${qemu}`, () => {
      const device = unit(options);
      expect(hex(device.readRegister(Reg.CAP, 8))).toBe(hex(cap));
      expect(hex(device.readRegister(Reg.ECAP, 8))).toBe(hex(ecap));
    });
  }

  it("scalableMode off (the default) reports the legacy unit's CAP and ECAP bit for bit", () => {
    expect(hex(unit({}).readRegister(Reg.ECAP, 8))).toBe(hex(0xf00f4an));
    expect(hex(unit({ scalableMode: false }).readRegister(Reg.CAP, 8))).toBe(hex(0x00d2008c222f0606n));
  });

  it("pasidBits sets ECAP.PSS to pasidBits - 1, and both stages can be offered together", () => {
    const ecap = unit({ scalableMode: true, firstStage: true, secondStage: true, pasidBits: 20 }).readRegister(Reg.ECAP, 8);
    expect((ecap >> 35n) & 0x1fn).toBe(19n);
    expect((ecap >> 40n) & 1n).toBe(1n);
    expect((ecap >> 46n) & 3n).toBe(3n);
    expect((ecap >> 26n) & 1n).toBe(0n); // NEST never offered
  });
});

describe("scalable-mode options: bad values and forbidden combinations are named", () => {
  const refused: [object, RegExp][] = [
    [{ scalableMode: "yes" }, /option scalableMode: expected true or false/],
    [{ scalableMode: true, firstStage: 1 }, /option firstStage: expected true or false/],
    [{ firstStage: true }, /option firstStage: needs scalableMode/],
    [{ secondStage: true }, /option secondStage: needs scalableMode/],
    [{ pasidBits: 8 }, /option pasidBits: needs scalableMode/],
    [{ scalableMode: true, pasidBits: 0 }, /option pasidBits: expected an integer 1\.\.20/],
    [{ scalableMode: true, pasidBits: 21 }, /option pasidBits: expected an integer 1\.\.20/],
    [{ scalableMode: true, pasidBits: 2.5 }, /option pasidBits/],
    [{ scalableMode: true, secondStage: false }, /firstStage and secondStage: a scalable-mode unit needs at least one translation stage/],
    [{ scalableMode: true, firstStage: true, awBits: 39 }, /option firstStage: needs awBits 48/],
  ];
  for (const [options, message] of refused) {
    it(JSON.stringify(options), () => {
      expect(() => unit(options)).toThrow(message);
    });
  }

  it("defaults: off; with scalable mode the second stage alone; with firstStage the first stage alone (QEMU 10.0's x-flts)", () => {
    expect(unit({}).options).toMatchObject({ scalableMode: false, firstStage: false, secondStage: false, pasidBits: 0 });
    expect(unit({ scalableMode: true }).options).toMatchObject({ scalableMode: true, firstStage: false, secondStage: true, pasidBits: 0 });
    expect(unit({ scalableMode: true, firstStage: true }).options).toMatchObject({ firstStage: true, secondStage: false });
    expect(unit({ firstStage: false, secondStage: false }).options.scalableMode).toBe(false);
  });
});
