/** `npm start`'s scalable-mode options: parsed, turned into the unit's options, refused by name when the unit would refuse them. */
import { describe, expect, it } from "vitest";
import { parseArguments, scalableOptions, USAGE } from "./arguments.ts";
import { resolveScalableOptions } from "../vtd-device/scalable/scalable-options.ts";

describe("--scalable-mode and --first-stage", () => {
  it("default to a legacy-mode unit: no scalable-mode option reaches it", () => {
    const args = parseArguments([]);
    expect(args.scalableMode).toBeUndefined();
    expect(args.firstStage).toBeUndefined();
    expect(scalableOptions(args)).toEqual({});
  });

  it("give the unit scalableMode, and firstStage when asked (QEMU x-scalable-mode, x-flts)", () => {
    expect(scalableOptions(parseArguments(["--scalable-mode", "on"]))).toEqual({ scalableMode: true, firstStage: false });
    expect(scalableOptions(parseArguments(["--scalable-mode=on", "--first-stage", "on"]))).toEqual({ scalableMode: true, firstStage: true });
    expect(scalableOptions(parseArguments(["--scalable-mode", "off", "--first-stage", "off"]))).toEqual({});
  });

  it("what they give is what the unit accepts: its stages as QEMU offers them", () => {
    expect(resolveScalableOptions(scalableOptions(parseArguments(["--scalable-mode", "on", "--aw-bits", "39"])), 39)).toMatchObject({ scalableMode: true, firstStage: false, secondStage: true });
    expect(resolveScalableOptions(scalableOptions(parseArguments(["--scalable-mode", "on", "--first-stage", "on"])), 48)).toMatchObject({ firstStage: true, secondStage: false });
  });

  it("refuse, naming the option, what the unit would refuse", () => {
    expect(() => scalableOptions(parseArguments(["--first-stage", "on"]))).toThrow(/--first-stage on: needs --scalable-mode on/);
    expect(() => scalableOptions(parseArguments(["--scalable-mode", "on", "--first-stage", "on", "--aw-bits", "39"]))).toThrow(/--first-stage on: needs --aw-bits 48/);
    expect(() => parseArguments(["--scalable-mode", "yes"])).toThrow(/--scalable-mode: expected on or off, got "yes"/);
  });

  it("are in the usage with the QEMU property each mirrors", () => {
    expect(USAGE).toMatch(/--scalable-mode on\|off[^\n]*\n[^\n]*x-scalable-mode/);
    expect(USAGE).toMatch(/--first-stage on\|off[^\n]*x-flts/);
  });
});
