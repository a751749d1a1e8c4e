/**
 * The Linux guest's tooling without booting anything: the initramfs archive (checked by the
 * system's cpio), the config fragment logic, the console parser, the runner's options.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyFragment, FRAGMENT_FILE, INIT_FILE, lostOptions, parseFragment } from "../firmware/linux/build.ts";
import { writeCpio } from "../firmware/linux/cpio.ts";
import { LinuxArgumentError, parseLinuxArguments } from "../src/linux/arguments.ts";
import { iommuGroups, parseGuestReport, PATTERN_LINE, patternBytes, resultValue, virtioBlk, workload } from "../src/linux/guest-report.ts";
import { expectsIommuOn } from "../src/linux/summary.ts";

const work = mkdtempSync(join(tmpdir(), "v86-linux-tools-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
// With REQUIRE_LINUX=1 (CI installs cpio) the test runs, and fails if cpio is missing.
const haveCpio = process.env.REQUIRE_LINUX === "1" || spawnSync("cpio", ["--version"], { stdio: "ignore" }).status === 0;

describe("initramfs cpio (newc)", () => {
  it.skipIf(!haveCpio)("is read back by GNU cpio: files, modes, symlinks", () => {
    const data = new Uint8Array(1001).map((_, i) => (i * 7) & 0xff);
    const archive = writeCpio([
      { type: "dir", path: "bin" },
      { type: "file", path: "bin/tool", data, mode: 0o755 },
      { type: "symlink", path: "bin/sh", target: "tool" },
      { type: "file", path: "init", data: new TextEncoder().encode("#!/bin/sh\n"), mode: 0o700 },
    ]);
    expect(archive.length % 4).toBe(0);
    const file = join(work, "test.cpio");
    writeFileSync(file, archive);
    const out = join(work, "out");
    const extract = spawnSync("sh", ["-c", `mkdir -p '${out}' && cd '${out}' && cpio -idm --quiet < '${file}'`], { encoding: "utf8" });
    expect(extract.stderr).toBe("");
    expect(extract.status).toBe(0);
    expect(new Uint8Array(readFileSync(join(out, "bin/tool")))).toEqual(data);
    expect(statSync(join(out, "bin/tool")).mode & 0o777).toBe(0o755);
    expect(statSync(join(out, "init")).mode & 0o777).toBe(0o700);
    expect(readlinkSync(join(out, "bin/sh"))).toBe("tool");
    const list = spawnSync("sh", ["-c", `cpio -t --quiet < '${file}'`], { encoding: "utf8" });
    expect(list.stdout.trim().split("\n")).toEqual(["bin", "bin/tool", "bin/sh", "init"]);
  });

  it("refuses absolute paths", () => {
    expect(() => writeCpio([{ type: "dir", path: "/bin" }])).toThrow(/must be relative/);
  });

  it("gives the same bytes for the same entries", () => {
    const entries = [{ type: "file" as const, path: "a", data: new Uint8Array([1, 2, 3]) }];
    expect(writeCpio(entries)).toEqual(writeCpio(entries));
  });
});

describe("kernel config fragment", () => {
  const fragment = parseFragment("# c\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n");

  it("replaces existing lines and appends missing ones", () => {
    const config = applyFragment("CONFIG_X=y\n# CONFIG_A is not set\nCONFIG_B=y\n", fragment);
    expect(config).toBe("CONFIG_X=y\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n");
  });

  it("names options olddefconfig dropped, essential ones first", () => {
    expect(lostOptions("CONFIG_A=y\nCONFIG_C=y\n", fragment)).toEqual([]);
    expect(lostOptions("CONFIG_A=y\nCONFIG_B=y\n", fragment)).toEqual(["CONFIG_B", "CONFIG_C"]);
    const essential = parseFragment("CONFIG_TTY=y\nCONFIG_INTEL_IOMMU=y\n");
    expect(lostOptions("", essential)).toEqual(["CONFIG_INTEL_IOMMU", "CONFIG_TTY"]);
  });

  it("the project's fragment asks for intel-iommu, virtio-blk and a 32-bit kernel", () => {
    const ours = parseFragment(readFileSync(FRAGMENT_FILE, "utf8"));
    const enabled = new Set(ours.filter((f) => f.enabled).map((f) => f.symbol));
    for (const symbol of ["CONFIG_INTEL_IOMMU", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_PCI", "CONFIG_PCI_MSI", "CONFIG_ACPI", "CONFIG_BLK_DEV_INITRD", "CONFIG_SERIAL_8250_CONSOLE"]) {
      expect(enabled.has(symbol), symbol).toBe(true);
    }
    expect(ours.find((f) => f.symbol === "CONFIG_64BIT")?.enabled).toBe(false);
  });
});

describe("the guest's report", () => {
  const console = [
    "[    0.5] DMAR: Host address width 48",
    "RESULT init 3.14",
    "RESULT kernel 6.1.0",
    "DMESG [    0.9] DMAR: Intel(R) Virtualization Technology for Directed I/O",
    "RESULT iommu-group 0 DMA 0000:00:04.0",
    "RESULT iommu-group 1 DMA-FQ 0000:00:0b.0",
    "RESULT iommu-groups 2",
    "RESULT virtio-blk 0000:00:0b.0 1",
    "RESULT pattern-sha256 abc",
    "RESULT write-start 4 5.00",
    "RESULT write-end 0 6.50",
    "RESULT read-start 4 6.60",
    "RESULT read-end 0 7.10",
    "RESULT readback-sha256 abc",
    "RESULT end 7.2",
  ].join("\r\n");

  it("reads RESULT and DMESG lines", () => {
    const report = parseGuestReport(console);
    expect(resultValue(report, "init")).toBe("3.14");
    expect(report.dmesg).toEqual(["[    0.9] DMAR: Intel(R) Virtualization Technology for Directed I/O"]);
    expect(iommuGroups(report)).toEqual([
      { id: "0", type: "DMA", devices: ["0000:00:04.0"] },
      { id: "1", type: "DMA-FQ", devices: ["0000:00:0b.0"] },
    ]);
    expect(virtioBlk(report)).toEqual({ pci: "0000:00:0b.0", group: "1" });
    const wl = workload(report)!;
    expect(wl).toMatchObject({ mib: 4, patternSha256: "abc", readbackSha256: "abc", writeStatus: 0, readStatus: 0 });
    expect(wl.writeSeconds).toBeCloseTo(1.5);
    expect(wl.readSeconds).toBeCloseTo(0.5);
  });

  it("reports no workload when it did not finish", () => {
    expect(workload(parseGuestReport("RESULT write-start 4 5.00\n"))).toBeUndefined();
    expect(virtioBlk(parseGuestReport("RESULT virtio-blk none none\n"))).toBeUndefined();
  });

  it("init.sh writes the pattern the host expects", () => {
    const init = readFileSync(INIT_FILE, "utf8");
    expect(init).toContain(`yes '${PATTERN_LINE.trimEnd()}'`);
    const bytes = patternBytes(1);
    expect(bytes.length).toBe(1 << 20);
    expect(new TextDecoder().decode(bytes.subarray(0, PATTERN_LINE.length * 2))).toBe(PATTERN_LINE + PATTERN_LINE);
  });
});

describe("npm run linux options", () => {
  it("parses every option", () => {
    expect(parseLinuxArguments(["--caching-mode", "on", "--cmdline", "intel_iommu=on iommu=pt", "--timeout=90", "--workload-mib", "2", "--quiet"])).toMatchObject({
      cachingMode: true,
      cmdline: "intel_iommu=on iommu=pt",
      timeoutSeconds: 90,
      workloadMiB: 2,
      quiet: true,
    });
    expect(parseLinuxArguments([])).toMatchObject({ cachingMode: false, cmdline: "intel_iommu=on" });
  });

  it("names a bad option", () => {
    expect(() => parseLinuxArguments(["--caching-mode", "yes"])).toThrow(new LinuxArgumentError('option --caching-mode: expected on or off, got "yes"'));
    expect(() => parseLinuxArguments(["--timeout", "0"])).toThrow(/option --timeout/);
    expect(() => parseLinuxArguments(["--workload-mib", "99"])).toThrow(/option --workload-mib/);
    expect(() => parseLinuxArguments(["--frobnicate"])).toThrow(/unknown option --frobnicate/);
  });

  it("knows when the command line turns the IOMMU off", () => {
    expect(expectsIommuOn("console=ttyS0 intel_iommu=on,strict")).toBe(true);
    expect(expectsIommuOn("console=ttyS0 intel_iommu=off")).toBe(false);
    expect(expectsIommuOn("intel_iommu=sm_off")).toBe(true);
  });
});
