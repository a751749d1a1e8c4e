/** `npm start` (src/main.ts) as a user runs it: a guest, the streamed transcript, the summary, the status. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { buildCGuest, flatMultibootImage, haveGcc32, X86 } from "./support/multiboot-images.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "v86-main-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function start(...args: string[]) {
  const run = spawnSync(process.execPath, ["--import", "tsx", join(root, "src", "main.ts"), ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function kernelFile(name: string, bytes: Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

describe("npm start", () => {
  it("exits 2 naming a bad option", () => {
    const run = start("--caching-mode", "maybe");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('option --caching-mode: expected on or off, got "maybe"');
  });

  it("passes the guest's exit code through and prints the summary", () => {
    const run = start("--kernel", kernelFile("exit5.bin", flatMultibootImage(X86.exit(5))), "--caching-mode", "off", "--aw-bits", "39");
    expect(run.status).toBe(5);
    expect(run.stdout).toMatch(/^VER {3}0x00000010 \(1\.0\)$/m);
    expect(run.stdout).toContain("guest: exit 5");
    expect(run.stderr).toContain("caching mode off, 39-bit address width");
  });

  it("exits 124 when the guest times out", () => {
    const run = start("--kernel", kernelFile("spin.bin", flatMultibootImage(X86.spin)), "--timeout", "0.3");
    expect(run.status).toBe(124);
    expect(run.stdout).toContain("guest: timed out");
  });

  it.skipIf(!haveGcc32())("streams the transcript of a real guest and counts what the unit saw", () => {
    const run = start("--kernel", kernelFile("platform.elf", buildCGuest("platform-guest")));
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("guest: done");
    expect(run.stdout).toMatch(/^CAP {3}0x[0-9a-f]{16}$/m);
    expect(run.stdout).toMatch(/invalidations:\n {2}none/);
  });
});
