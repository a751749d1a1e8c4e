/**
 * bench:peer's QEMU side: QEMU 10.0 TCG on q35 with its intel-iommu given the unit's options by
 * QEMU's property names (firmware/qemu.ts builds the machine: caching-mode, aw-bits, intremap as
 * the unit's defaults, edu), for Linux also the initramfs, the same RAM and a raw virtio-blk disk
 * of the same size with iommu_platform=on,disable-legacy=on. QEMU's process CPU time (every thread)
 * is read from /proc when a console line arrives.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QEMU_BINARY, qemuArguments } from "../firmware/qemu.ts";
import { consoleLines, parseGuestReport, workload } from "../src/linux/guest-report.ts";
import { linuxCmdline } from "../src/linux/boot.ts";
import { sha256Hex } from "../src/linux/summary.ts";
import type { VtdOptions } from "../src/vtd-device/index.ts";
import type { LinuxMode } from "./linux-modes.ts";
import { linuxSample, roundTripSample, WORKLOAD_MARKS, type ConsoleMark, type LinuxSample, type RoundTripSample } from "./peer-table.ts";

/** CPU time of every thread of a process, ms (Linux /proc; schedstat is in ns). NaN when it cannot be read. */
export function processTreeCpuMs(pid: number): number {
  try {
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return ns / 1e6;
  } catch {
    return Number.NaN;
  }
}

/** The intel-iommu properties for what firmware/qemu.ts does not set (scalable mode). */
function scalableProperties(vtd: Omit<VtdOptions, "memory" | "onInterrupt">): string {
  return (vtd.scalableMode ? ",x-scalable-mode=on" : "") + (vtd.firstStage ? ",x-flts=on" : "");
}

export function qemuMachineArguments(kernel: string, cmdline: string, vtd: LinuxMode["vtd"]): string[] {
  const args = qemuArguments({ kernel, cmdline, cachingMode: vtd.cachingMode, ...(vtd.awBits ? { awBits: vtd.awBits } : {}), interruptRemapping: vtd.interruptRemapping ?? true });
  const extra = scalableProperties(vtd);
  return extra ? args.map((arg) => (arg.startsWith("intel-iommu,") ? arg + extra : arg)) : args;
}

interface QemuRun {
  status: number | null;
  timedOut: boolean;
  console: string;
  marks: ConsoleMark[];
  diagnostics: string;
}

/** Runs QEMU and marks every console line with QEMU's CPU time and the wall time when it arrived. */
function runMarked(args: string[], timeoutMs: number): Promise<QemuRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU_BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
    const marks: ConsoleMark[] = [];
    let text = "";
    let partial = "";
    let diagnostics = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const cpuMs = child.pid === undefined ? Number.NaN : processTreeCpuMs(child.pid);
      const wallMs = performance.now() - started;
      text += chunk;
      const lines = consoleLines(partial + chunk);
      partial = lines.pop() ?? "";
      for (const line of lines) marks.push({ line, cpuMs, wallMs, instructions: null });
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (diagnostics += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, timedOut, console: text, marks, diagnostics });
    });
  });
}

function failure(what: string, run: QemuRun): Error {
  const tail = consoleLines(run.console.trimEnd()).slice(-20).join("\n");
  return new Error(`bench:peer: QEMU ${what} (status ${run.status}${run.timedOut ? ", timed out" : ""}):\n${tail}\n${run.diagnostics}`);
}

export interface LinuxFiles {
  bzImage: string;
  initrd: string;
}

/** One Linux boot under QEMU doing init's workload; the data is checked on the disk image. */
export async function qemuLinuxSample(files: LinuxFiles, mode: LinuxMode, workloadMiB: number, diskMiB: number, memoryMiB: number): Promise<LinuxSample> {
  const dir = mkdtempSync(join(tmpdir(), "v86-vtd-peer-"));
  try {
    const disk = join(dir, "vda.img");
    const fd = openSync(disk, "w");
    ftruncateSync(fd, diskMiB * 2 ** 20);
    closeSync(fd);
    const args = [
      ...qemuMachineArguments(files.bzImage, linuxCmdline(mode.cmdline, workloadMiB), mode.vtd),
      "-initrd", files.initrd,
      "-m", String(memoryMiB),
      "-drive", `file=${disk},if=none,id=vda,format=raw`,
      "-device", "virtio-blk-pci,drive=vda,iommu_platform=on,disable-legacy=on",
    ];
    const run = await runMarked(args, 300_000);
    const wl = workload(parseGuestReport(run.console));
    // init ends by writing 0 to the exit port: QEMU's status (0 << 1) | 1.
    if (run.status !== 1 || !wl || wl.patternSha256 !== wl.readbackSha256) throw failure(`${mode.name}: the Linux guest did not complete its workload`, run);
    const onDisk = sha256Hex(new Uint8Array(readFileSync(disk)).subarray(0, wl.mib * 2 ** 20));
    if (onDisk !== wl.patternSha256) throw failure(`${mode.name}: the disk image does not hold the pattern the guest wrote`, run);
    const marks: Partial<Record<(typeof WORKLOAD_MARKS)[number], ConsoleMark>> = {};
    for (const name of WORKLOAD_MARKS) marks[name] = run.marks.find((m) => m.line.startsWith(`RESULT ${name} `));
    return linuxSample(marks, wl.mib);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The C guest under QEMU (caching mode on, as `npm start`), its round trips translated or not. */
export async function qemuRoundTripSample(kernel: string, translated: boolean, rounds: number): Promise<RoundTripSample> {
  const cmdline = `${translated ? "" : "translation-off "}dma-rounds=${rounds}`;
  const run = await runMarked(qemuMachineArguments(kernel, cmdline, { cachingMode: true }), 60_000 + rounds * 1000);
  if (run.status !== 1) throw failure(`C guest (${cmdline}) did not exit with 0`, run);
  return roundTripSample(run.marks, rounds);
}
