/**
 * `npm start --scalable-mode on [--first-stage on]` (src/main.ts): the options reach the unit
 * (ECAP.SMTS, FSTS as QEMU's x-scalable-mode / x-flts give them) and the test guest's scalable-mode
 * section runs through them; a combination the unit refuses exits 2 naming the option.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { firmwareToolsMissing } from "../firmware/build.ts";
import { getField } from "../src/spec/field.ts";
import { Ecap } from "../src/spec/registers.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const toolsMissing = firmwareToolsMissing();
if (toolsMissing) console.warn(`main-scalable.test: the guest runs skipped: ${toolsMissing}`);

function start(...args: string[]) {
  const run = spawnSync(process.execPath, ["--import", "tsx", join(root, "src", "main.ts"), ...args], { cwd: root, encoding: "utf8", timeout: 90_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("npm start in scalable mode", () => {
  it("refuses --first-stage without --scalable-mode, and with a 39-bit width, naming the option", () => {
    const alone = start("--first-stage", "on");
    expect(alone.status).toBe(2);
    expect(alone.stderr).toContain("option --first-stage on: needs --scalable-mode on");
    const narrow = start("--scalable-mode", "on", "--first-stage", "on", "--aw-bits", "39");
    expect(narrow.status).toBe(2);
    expect(narrow.stderr).toContain("option --first-stage on: needs --aw-bits 48");
  });

  it.skipIf(toolsMissing !== null)("--scalable-mode on --first-stage on: the unit offers the first stage alone and the guest's section passes through it", () => {
    const run = start("--scalable-mode", "on", "--first-stage", "on", "--cmdline", "scalable", "--deterministic");
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stderr).toContain("scalable mode (first stage)");
    expect(run.stdout).toContain("INFO sm.stages first 1 second 0");
    expect(run.stdout).toContain("RESULT sm.fs.iotlb.flushed PASS");
    expect(run.stdout).toMatch(/^INFO summary passed \d+ failed 0$/m);
  }, 120_000);

  it.skipIf(toolsMissing !== null)("--scalable-mode on without the guest's word: the unit offers scalable mode, the guest stays in legacy mode", () => {
    const run = start("--scalable-mode", "on", "--caching-mode", "off", "--deterministic");
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const ecap = BigInt(/^INFO unit\.ecap (0x[0-9a-f]+)$/m.exec(run.stdout)?.[1] ?? "0");
    expect(getField(ecap, Ecap.SMTS), "ECAP.SMTS").toBe(1n);
    expect(run.stdout).toContain("RESULT root.set PASS");
    expect(run.stdout).not.toContain("sm.stages");
  }, 120_000);
});
