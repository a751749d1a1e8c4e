/**
 * Boots the Linux guest in v86: Debian's SeaBIOS, the bzImage and initramfs, the project's VT-d
 * unit (DMAR served through fw_cfg so SeaBIOS adds it to its ACPI tables) and a RAM-backed
 * virtio-blk disk on the PCI bus whose every DMA goes through the unit. Watches the console for
 * the guest's marks and for a kernel panic, snapshots the unit's counters at each mark, and
 * always ends by the timeout. Node only (reads the BIOS files).
 */
import { existsSync, readFileSync } from "node:fs";
import type { PciEndpoint } from "../acpi/dmar.ts";
import { attachVtd, type VtdAttachment } from "../v86/attach.ts";
import { Machine, type StopReason } from "../v86/machine.ts";
import type { Platform, PlatformOptions } from "../v86/platform.ts";
import { patchedV86Module } from "../v86/v86-wasm.node.ts";
import type { VtdOptions } from "../vtd-device/index.ts";
import { consoleLines, parseGuestReport, type GuestReport } from "./guest-report.ts";
import { UnitCounts, type UnitSnapshot } from "./unit-counts.ts";
import { attachVirtioDisk, type VirtioDisk } from "./virtio-disk.ts";

export const SEABIOS = "/usr/share/seabios/bios.bin";
export const VGA_BIOS = "/usr/share/seabios/vgabios-stdvga.bin";
/** Always on the command line: the console on the first UART, where the runner reads it. */
export const BASE_CMDLINE = "console=ttyS0";
export const DEFAULT_MEMORY_MIB = 128;
export const DEFAULT_DISK_MIB = 16;
export const DEFAULT_WORKLOAD_MIB = 4;
export const DEFAULT_TIMEOUT_MS = 180_000;
/** After "Kernel panic", how long the console may keep printing the trace before the run ends. */
const PANIC_GRACE_MS = 2_000;
/** Guest marks at which the unit's counters are snapshotted (keys of RESULT lines). */
export const MARKS = ["init", "write-start", "write-end", "read-start", "read-end", "end"] as const;
export type Mark = (typeof MARKS)[number];

export interface LinuxBootOptions {
  bzImage: Uint8Array;
  initrd: Uint8Array;
  /** Extra kernel command line (after console=ttyS0), e.g. "intel_iommu=on,strict". */
  cmdline?: string;
  vtd?: Omit<VtdOptions, "memory" | "onInterrupt">;
  memoryMiB?: number;
  /** The virtio-blk disk's size; 0 boots without the disk. */
  diskMiB?: number;
  /** MiB the guest writes and reads back (init's workload_mib). */
  workloadMiB?: number;
  timeoutMs?: number;
  /** Guest time follows guest instructions (Machine option `deterministic`). */
  deterministic?: boolean;
  /** v86 interprets every instruction (its `disable_jit`): interrupts land where instruction counts say, whatever the JIT did before. */
  disableJit?: boolean;
  /** The console as it comes. */
  onConsole?: (text: string) => void;
  bios?: string;
  vgaBios?: string;
  /** Passed to installPlatform: something between the PCI functions' DMA and the unit. */
  interposeDma?: PlatformOptions["interposeDma"];
  /** Called at each of the guest's marks (after the unit's counters were snapshotted). */
  onMark?: (mark: Mark) => void;
  /** Called once the platform is set up, before the guest runs. */
  onReady?: (parts: { platform: Platform; disk: VirtioDisk | undefined; machine: Machine; attachment: VtdAttachment }) => void;
}

export type LinuxOutcome = "completed" | "panic" | "timeout" | "halted" | "exited-early" | "stopped";

export interface MarkRecord {
  /** Host wall time since the machine started running, ms. */
  hostMs: number;
  /** Guest instructions executed since the machine started (v86's count; independent of host load). */
  instructions: number;
  unit: UnitSnapshot;
}

export interface LinuxRun {
  outcome: LinuxOutcome;
  stopReason: StopReason;
  exitCode: number | null;
  cmdline: string;
  console: string;
  report: GuestReport;
  marks: Partial<Record<Mark, MarkRecord>>;
  /** The unit's counters at the end of the run. */
  unit: UnitSnapshot;
  counts: UnitCounts;
  platform: Platform;
  disk: VirtioDisk | undefined;
  elapsedMs: number;
  instructions: number;
  clflushes: number;
}

export function readBiosFiles(bios = SEABIOS, vgaBios = VGA_BIOS): { bios: Uint8Array; vgaBios: Uint8Array } {
  for (const file of [bios, vgaBios]) {
    if (!existsSync(file)) throw new Error(`${file} not found: the Linux guest boots with Debian's SeaBIOS (apt-get install seabios)`);
  }
  return { bios: new Uint8Array(readFileSync(bios)), vgaBios: new Uint8Array(readFileSync(vgaBios)) };
}

export function linuxCmdline(extra: string, workloadMiB: number): string {
  return [BASE_CMDLINE, extra.trim(), `workload_mib=${workloadMiB}`].filter((part) => part.length > 0).join(" ");
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`bootLinux option ${name}: expected an integer ${min}..${max}, got ${value}`);
}

export async function bootLinux(options: LinuxBootOptions): Promise<LinuxRun> {
  const memoryMiB = options.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const diskMiB = options.diskMiB ?? DEFAULT_DISK_MIB;
  const workloadMiB = options.workloadMiB ?? DEFAULT_WORKLOAD_MIB;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  checkInteger("memoryMiB", memoryMiB, 64, 2048);
  checkInteger("diskMiB", diskMiB, 0, 1024);
  checkInteger("workloadMiB", workloadMiB, 1, 1024);
  if (diskMiB > 0 && workloadMiB > diskMiB) throw new RangeError(`bootLinux option workloadMiB: ${workloadMiB} MiB does not fit the ${diskMiB} MiB disk`);
  // v86 puts the initrd at 64 MiB; the guest holds the pattern and the read-back copy in its
  // RAM-backed root file system; 16 MiB more for the kernel's own use.
  if (memoryMiB < 64 + Math.ceil(options.initrd.length / 2 ** 20) + 2 * workloadMiB + 16) {
    throw new RangeError(`bootLinux option memoryMiB: ${memoryMiB} MiB is too little for the initrd at 64 MiB and a ${workloadMiB} MiB workload`);
  }
  if (!(timeoutMs > 0)) throw new RangeError(`bootLinux option timeoutMs: expected > 0, got ${timeoutMs}`);
  const cmdline = linuxCmdline(options.cmdline ?? "", workloadMiB);

  const machine = await Machine.create({
    wasmModule: await patchedV86Module(),
    memoryBytes: memoryMiB * 2 ** 20,
    ...readBiosFiles(options.bios, options.vgaBios),
    bzImage: options.bzImage,
    initrd: options.initrd,
    cmdline,
    deterministic: options.deterministic ?? false,
    disableJit: options.disableJit ?? false,
  });
  let disk: VirtioDisk | undefined;
  // The same entry a user's own V86 takes: SeaBIOS gets the DMAR through fw_cfg.
  const attachment = attachVtd(machine.emulator, {
    ...options.vtd,
    acpi: "fw_cfg",
    attachDevices: (bus): PciEndpoint[] => {
      if (diskMiB === 0) return [];
      disk = attachVirtioDisk(bus, new Uint8Array(diskMiB * 2 ** 20));
      return [disk.endpoint];
    },
    ...(options.interposeDma ? { interposeDma: options.interposeDma } : {}),
  });
  const platform = attachment.platform;
  const counts = new UnitCounts(platform.device);
  options.onReady?.({ platform, disk, machine, attachment });

  let consoleText = "";
  let partial = "";
  let outcome: LinuxOutcome | undefined;
  let panicTimer: ReturnType<typeof setTimeout> | undefined;
  const marks: Partial<Record<Mark, MarkRecord>> = {};
  const started = performance.now();
  const onLine = (line: string) => {
    const mark = /^RESULT (\S+)/.exec(line)?.[1];
    if (mark && (MARKS as readonly string[]).includes(mark) && !marks[mark as Mark]) {
      marks[mark as Mark] = { hostMs: performance.now() - started, instructions: machine.instructions, unit: counts.snapshot() };
      options.onMark?.(mark as Mark);
      if (mark === "end") outcome ??= "completed";
    }
    if (line.includes("Kernel panic - not syncing")) {
      outcome ??= "panic";
      panicTimer ??= setTimeout(() => machine.requestStop(), PANIC_GRACE_MS);
    }
    if (outcome === "panic" && line.includes("---[ end Kernel panic")) machine.requestStop();
  };
  machine.onSerial((text) => {
    consoleText += text;
    options.onConsole?.(text);
    const lines = consoleLines(partial + text);
    partial = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  });

  let result;
  try {
    result = await machine.run(timeoutMs);
  } finally {
    clearTimeout(panicTimer);
  }
  if (partial) onLine(partial);
  if (!outcome) {
    outcome = result.reason === "timeout" ? "timeout" : result.reason === "halted" ? "halted" : result.reason === "exit" ? "exited-early" : "stopped";
  }
  return {
    outcome,
    stopReason: result.reason,
    exitCode: result.exitCode,
    cmdline,
    console: consoleText,
    report: parseGuestReport(consoleText),
    marks,
    unit: counts.snapshot(),
    counts,
    platform,
    disk,
    elapsedMs: performance.now() - started,
    instructions: result.instructions,
    clflushes: machine.clflush.count,
  };
}

/** The last `count` lines of the console, for error messages. */
export function lastConsoleLines(text: string, count = 30): string {
  const lines = consoleLines(text.trimEnd());
  return lines.slice(-count).join("\n");
}
