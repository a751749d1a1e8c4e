import { describe, expect, it } from "vitest";
import { parseArguments } from "./arguments.ts";

describe("npm start arguments", () => {
  it("defaults to caching mode on, 48-bit, the firmware kernel, 60 s", () => {
    expect(parseArguments([])).toEqual({ cachingMode: true, awBits: 48, kernel: undefined, cmdline: "", timeoutSeconds: 60, help: false });
  });

  it("takes every option, as two words or with =", () => {
    expect(parseArguments(["--caching-mode", "off", "--aw-bits=39", "--kernel", "g.elf", "--cmdline", "no-qi dma-rounds=3", "--timeout", "2.5"])).toEqual({
      cachingMode: false,
      awBits: 39,
      kernel: "g.elf",
      cmdline: "no-qi dma-rounds=3",
      timeoutSeconds: 2.5,
      help: false,
    });
    expect(parseArguments(["--help"]).help).toBe(true);
  });

  it("names the option in every mistake", () => {
    expect(() => parseArguments(["--caching-mode", "yes"])).toThrow(/--caching-mode: expected on or off, got "yes"/);
    expect(() => parseArguments(["--aw-bits", "57"])).toThrow(/--aw-bits: expected 39 or 48/);
    expect(() => parseArguments(["--timeout", "-1"])).toThrow(/--timeout: expected a number of seconds/);
    expect(() => parseArguments(["--kernel"])).toThrow(/--kernel needs a value/);
    expect(() => parseArguments(["--kernel", "--help"])).toThrow(/--kernel needs a value/);
    expect(() => parseArguments(["--cmdline"])).toThrow(/--cmdline needs a value/);
    expect(parseArguments(["--cmdline=--x"]).cmdline).toBe("--x");
    expect(() => parseArguments(["--verbose"])).toThrow(/unknown option --verbose/);
    expect(() => parseArguments(["kernel.elf"])).toThrow(/unknown option kernel.elf \(options start with --\)/);
  });
});
