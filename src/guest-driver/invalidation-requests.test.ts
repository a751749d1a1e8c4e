/**
 * runInvalidations, the driver's entry for requests made outside it (tests, tools): a request
 * of an unknown kind, with a field of the wrong type or beyond its descriptor field, or one that
 * needs scalable mode's 256-bit queue on a driver in legacy mode, is refused with an error naming
 * the kind and the field, and nothing reaches the unit (no queue error).
 */
import { describe, expect, it } from "vitest";
import { Fsts, Reg } from "../spec/registers.ts";
import { testMachine } from "../../test/support/driver-scenarios.ts";
import { scalableMachine } from "../../test/support/scalable-driver.ts";
import type { InvalidationRequest } from "./invalidation.ts";

const bad = (r: object) => [r as InvalidationRequest];

describe("runInvalidations refuses what no descriptor can say, naming it", () => {
  it("an unknown kind, and fields of the wrong type or beyond their descriptor field", () => {
    const m = testMachine({}, {});
    expect(() => m.driver.runInvalidations(bad({ kind: "bogus" }))).toThrow(/invalidation request kind bogus: expected one of context-global, /);
    expect(() => m.driver.runInvalidations(bad({ kind: "iotlb-domain", did: "x" }))).toThrow(/iotlb-domain: did x: expected an integer 0\.\.65535/);
    expect(() => m.driver.runInvalidations(bad({ kind: "context-device", did: 1, sid: 0x1_0000, fm: 0 }))).toThrow(/context-device: sid 65536: expected an integer 0\.\.65535/);
    expect(() => m.driver.runInvalidations(bad({ kind: "iotlb-page", did: 1, address: 0x1000, am: 1, ih: false }))).toThrow(/iotlb-page: address 0x1000: expected a multiple of 0x2000 \(2\^am pages\)/);
    expect(() => m.driver.runInvalidations(bad({ kind: "iotlb-page", did: 1, address: 0, am: 0, ih: 1 }))).toThrow(/iotlb-page: ih 1: expected true or false/);
    expect(() => m.driver.runInvalidations(bad({ kind: "device-tlb", sid: 0x20, address: 0, size: false }))).toThrow(/device-tlb: address 0: expected a bigint/);
    expect(Number(m.platform.device.readRegister(Reg.FSTS, 4)) & Number(Fsts.IQE)).toBe(0);
  });

  it("PASID descriptors on a driver in legacy mode: they need scalable mode's 256-bit queue, and never reach the unit", () => {
    const m = testMachine({}, {});
    expect(() => m.driver.runInvalidations([{ kind: "pasid-iotlb", did: 1, pasid: 0 }])).toThrow(/pasid-iotlb: needs scalable mode \(256-bit descriptors/);
    expect(Number(m.platform.device.readRegister(Reg.FSTS, 4)) & Number(Fsts.IQE)).toBe(0);
    const s = scalableMachine();
    expect(() => s.driver.runInvalidations([{ kind: "pasid-cache", did: 1, pasid: 0x10_0000 }])).toThrow(/pasid-cache: pasid 1048576: expected an integer 0\.\.1048575/);
    s.driver.runInvalidations([{ kind: "pasid-iotlb-page", did: 1, pasid: 5, address: 0x4000, am: 2, ih: true }]);
    expect(s.issued.at(-1)).toBe("pasid-iotlb-page did 1 pasid 5 addr 0x4000 am 2");
  });
});
