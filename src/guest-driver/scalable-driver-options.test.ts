/**
 * The driver's scalable-mode options: each bad value or combination is an error naming the
 * option; a unit without scalable mode is driven in legacy mode with the reason kept, as Linux's
 * sm_on does on such hardware.
 */
import { describe, expect, it } from "vitest";
import { Reg, Rtaddr } from "../spec/registers.ts";
import { getField } from "../spec/field.ts";
import { deviceRead, SID_A, testMachine } from "../../test/support/driver-scenarios.ts";
import { scalableMachine } from "../../test/support/scalable-driver.ts";
import type { DriverOptions } from "./options.ts";

const start = (vtd: Parameters<typeof testMachine>[0], driver: DriverOptions) => () => testMachine(vtd, driver);
const SM_UNIT = { scalableMode: true, firstStage: true, secondStage: true } as const;

describe("bad options are named", () => {
  it("scalableMode not a boolean, an unknown stage, a stage without scalable mode", () => {
    expect(start(SM_UNIT, { scalableMode: "yes" as unknown as boolean })).toThrow(/scalableMode yes: expected true or false/);
    expect(start(SM_UNIT, { scalableMode: true, stage: "third" as unknown as "first" })).toThrow(/stage third: expected "first" or "second"/);
    expect(start(SM_UNIT, { stage: "first" })).toThrow(/stage "first": needs scalableMode/);
  });

  it("scalable mode with register-based invalidation", () => {
    expect(start(SM_UNIT, { scalableMode: true, registerInvalidation: true })).toThrow(/scalableMode with registerInvalidation: scalable mode needs queued invalidation/);
  });

  it("a stage the unit does not offer", () => {
    expect(start({ scalableMode: true }, { scalableMode: true, stage: "first" })).toThrow(/stage "first": the unit does not offer first-stage translation \(ECAP.FSTS = 0\)/);
    expect(start({ scalableMode: true, firstStage: true }, { scalableMode: true, stage: "second" })).toThrow(/stage "second": .*ECAP.SSTS = 0/);
  });

  it("a 39-bit first-stage domain", () => {
    const m = scalableMachine({}, { stage: "first" });
    expect(() => m.driver.createDomain({ addressWidth: 39 })).toThrow(/39-bit first-stage domain: first-stage paging is 4-level/);
    expect(m.driver.createDomain({ addressWidth: 48 }).widthBits).toBe(47);
  });
});

describe("a unit without scalable mode", () => {
  it("is driven in legacy mode (TTM = 00), saying why, and DMA works", () => {
    const m = testMachine({}, { scalableMode: true });
    expect(m.driver.scalableMode).toBe(false);
    expect(m.driver.scalableFallback).toBe("ECAP.SMTS = 0");
    expect(m.driver.domainStage).toBe("second");
    expect(Number(getField(m.platform.device.readRegister(Reg.RTADDR, 8), Rtaddr.TTM))).toBe(0);
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const iova = m.driver.mapBuffer(d, 0x40_0000, 4096, "r");
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
  });

  it("scalable mode not asked for on a unit that offers it: legacy mode", () => {
    const m = testMachine(SM_UNIT, {});
    expect(m.driver.scalableMode).toBe(false);
    expect(m.driver.scalableFallback).toBeUndefined();
    expect(Number(getField(m.platform.device.readRegister(Reg.RTADDR, 8), Rtaddr.TTM))).toBe(0);
  });
});
