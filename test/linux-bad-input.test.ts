/**
 * What a user sees when the Linux guest cannot be built or does not finish: a missing build
 * dependency, a kernel build that fails, a configuration that loses INTEL_IOMMU, a guest that
 * panics, a guest that hangs. Each ends with a clear message and a non-zero exit, never a hang.
 * The build failures use a stand-in source tarball (a Makefile that fails the way a kernel build
 * does); the guest failures boot the real kernel (skipped when it is not built, unless
 * REQUIRE_LINUX=1).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { linuxGuestReadiness, missingKernelDependencies } from "../firmware/linux/build.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "v86-linux-bad-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function which(tool: string): string | undefined {
  const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

function tsx(script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number) {
  const started = performance.now();
  const run = spawnSync(process.execPath, ["--import", "tsx", join(root, script), ...args], { cwd: root, encoding: "utf8", env: { ...process.env, ...env }, timeout: timeoutMs });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, seconds: (performance.now() - started) / 1000 };
}

/** A .tar.xz holding linux-fake/Makefile with these targets (recipes as shell lines). */
function fakeSource(name: string, targets: Record<string, string[]>): string {
  const dir = join(work, name);
  mkdirSync(join(dir, "linux-fake"), { recursive: true });
  const makefile = Object.entries(targets)
    .map(([target, lines]) => `${target}:\n${lines.map((line) => `\t@${line}`).join("\n")}\n`)
    .join("\n");
  writeFileSync(join(dir, "linux-fake", "Makefile"), makefile);
  const tarball = join(work, `${name}.tar.xz`);
  const tar = spawnSync("tar", ["-cJf", tarball, "-C", dir, "linux-fake"], { encoding: "utf8" });
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  return tarball;
}

// With REQUIRE_LINUX=1 (CI installs the tools) these run, and fail if a tool is missing.
const buildToolsPresent = process.env.REQUIRE_LINUX === "1" || missingKernelDependencies().filter((m) => !m.includes("linux-source")).length === 0;

describe("npm run build:linux", () => {
  it("names each missing build dependency with its Debian package and exits 1", () => {
    // A PATH with every tool the build needs except flex and bison.
    const bin = join(work, "bin");
    mkdirSync(bin, { recursive: true });
    for (const tool of ["make", "gcc", "bc", "perl", "tar", "xz", "dpkg-query", "dpkg-deb", "sh"]) {
      const path = which(tool);
      if (path) symlinkSync(path, join(bin, tool));
    }
    symlinkSync(process.execPath, join(bin, "node"));
    const run = tsx("firmware/linux/build.ts", [], { PATH: bin, XDG_CACHE_HOME: join(work, "cache-deps"), LINUX_SOURCE_TARBALL: fakeSource("deps", { tinyconfig: ["true"] }) }, 60_000);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("error: missing build dependency:");
    expect(run.stderr).toContain("flex (package flex)");
    expect(run.stderr).toContain("bison (package bison)");
    if (which("make")) expect(run.stderr).not.toContain("make (package make)");
  });

  it("names a missing source tarball", () => {
    const run = tsx("firmware/linux/build.ts", [], { XDG_CACHE_HOME: join(work, "cache-none"), LINUX_SOURCE_TARBALL: join(work, "no-such-source.tar.xz") }, 60_000);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`error: missing build dependency: ${join(work, "no-such-source.tar.xz")} not found (Debian: apt-get install linux-source-6.1)`);
  });

  it.skipIf(!buildToolsPresent)("reports a failing kernel build with the last lines of its log and exits 1", () => {
    const tarball = fakeSource("fails", {
      tinyconfig: ["printf 'CONFIG_X86_32=y\\n' > $(O)/.config"],
      olddefconfig: ["true"],
      bzImage: ['echo "  CC      init/main.o"', 'echo "init/main.c:1:1: error: fake-error: this kernel does not build" >&2', "exit 2"],
    });
    const run = tsx("firmware/linux/build.ts", [], { XDG_CACHE_HOME: join(work, "cache-fails"), LINUX_SOURCE_TARBALL: tarball }, 120_000);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("error: kernel build failed (make exit 2)");
    expect(run.stderr).toMatch(/--- last \d+ lines of .*v86-vtd-build\.log ---/);
    expect(run.stderr).toContain("init/main.c:1:1: error: fake-error: this kernel does not build");
  });

  it.skipIf(!buildToolsPresent)("refuses a configuration that lost INTEL_IOMMU, naming it first", () => {
    const tarball = fakeSource("lost", {
      tinyconfig: ["printf 'CONFIG_X86_32=y\\n' > $(O)/.config"],
      olddefconfig: ["sed -i -e '/^CONFIG_INTEL_IOMMU=y/d' -e '/^CONFIG_TTY=y/d' $(O)/.config"],
      bzImage: ["exit 1"],
    });
    const run = tsx("firmware/linux/build.ts", [], { XDG_CACHE_HOME: join(work, "cache-lost"), LINUX_SOURCE_TARBALL: tarball }, 120_000);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("error: the kernel configuration lost CONFIG_INTEL_IOMMU, CONFIG_TTY after olddefconfig");
  });
});

const required = process.env.REQUIRE_LINUX === "1";
const readiness = linuxGuestReadiness();

describe.skipIf(!readiness.ready && !required)(`npm run linux with a guest that does not finish${readiness.ready || required ? "" : ` (skipped: ${(readiness as { reason: string }).reason})`}`, () => {
  it("stops at a kernel panic with the last console lines and exits 1", () => {
    const run = tsx("src/linux/main.ts", ["--quiet", "--cmdline", "intel_iommu=on rdinit=/nonexistent", "--timeout", "240"], {}, 30 * 60_000);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("error: the kernel panicked; last console lines:");
    expect(run.stderr).toContain("Kernel panic - not syncing");
    expect(run.stdout).toContain("FAIL guest completed: outcome panic");
  }, 30 * 60_000); // with REQUIRE_LINUX=1 and no kernel yet, the run builds it first

  it("never runs past --timeout on a guest that hangs, exits 124 with the last console lines", () => {
    // rdinit=/bin/sh: an interactive shell on a console nobody types into.
    const run = tsx("src/linux/main.ts", ["--quiet", "--cmdline", "intel_iommu=on rdinit=/bin/sh", "--timeout", "15"], {}, 30 * 60_000);
    expect(run.status).toBe(124);
    expect(run.stderr).toContain("error: timed out after 15 s; last console lines:");
    expect(run.stdout).toContain("FAIL guest completed: outcome timeout");
    expect(run.seconds).toBeLessThan(15 + 30); // process start, the cache check and the summary on top
  }, 120_000);
});
