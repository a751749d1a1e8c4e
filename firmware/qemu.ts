/**
 * Runs the test guest on QEMU (the reference platform, 10.0): q35, TCG, intel-iommu with
 * interrupt remapping (eim=off), edu, isa-debug-exit on port 0xF4. Also a transcript parser shared by the
 * tests, and the check that the installed QEMU is the reference.
 *
 *   npx tsx firmware/qemu.ts [--cm] [--aw-bits 39|48] [--scalable] [--first-stage] [--append "skip-cm-invalidation"]
 */
import { spawn, spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureFirmware } from "./build.ts";

export const QEMU_BINARY = process.env.QEMU ?? "qemu-system-x86_64";

/**
 * The reference: QEMU 10.0 (Debian bookworm-backports' `qemu-system-x86`, which .ci/run installs).
 * An older QEMU is not compared with: 7.2 differs from 10.0 in ways docs/conformance.md lists.
 */
export const REFERENCE_QEMU = { major: 10, minor: 0 } as const;

/** Why the `--version` line names a QEMU older than the reference (or none), or null when it is fine. */
export function qemuVersionProblem(versionLine: string): string | null {
  const match = /version (\d+)\.(\d+)(?:\.(\d+))?/.exec(versionLine);
  if (!match) return `cannot read a QEMU version in "${versionLine}"`;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major > REFERENCE_QEMU.major || (major === REFERENCE_QEMU.major && minor >= REFERENCE_QEMU.minor)) return null;
  return `QEMU ${match[0].slice("version ".length)} is older than the reference ${REFERENCE_QEMU.major}.${REFERENCE_QEMU.minor} ` +
    "(install qemu-system-x86 from bookworm-backports, as .ci/run does)";
}

export interface QemuRunOptions {
  kernel: string;
  cachingMode?: boolean;
  /** intel-iommu intremap (with eim=off: no x2APIC on v86). Default true, as QEMU 10.0's q35 and the unit. */
  interruptRemapping?: boolean;
  /** intel-iommu aw-bits, always passed: 39 or 48 (default, as QEMU 10.0's and the unit's). */
  awBits?: 39 | 48;
  /** intel-iommu x-scalable-mode (ECAP.SMTS; the unit's `scalableMode`). Default false. */
  scalableMode?: boolean;
  /** intel-iommu x-flts (first stage alone, needs aw-bits=48; the unit's `firstStage`). Default false. */
  firstStage?: boolean;
  /** Multiboot command line (QEMU -append). */
  cmdline?: string;
  timeoutMs?: number;
}

export interface GuestRun {
  /** The code the guest wrote to port 0xF4, or null if it never did. */
  exitCode: number | null;
  timedOut: boolean;
  transcript: string;
  elapsedMs: number;
  /** QEMU's own messages (stderr). */
  diagnostics: string;
}

/** Why QEMU cannot be used here, or null when it can. */
export function qemuUnavailable(): string | null {
  const probe = spawnSync(QEMU_BINARY, ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) return `${QEMU_BINARY} not runnable: ${probe.error?.message ?? probe.stderr}`;
  const tooOld = qemuVersionProblem(probe.stdout.split("\n")[0] ?? "");
  if (tooOld) return `${QEMU_BINARY}: ${tooOld}`;
  const devices = spawnSync(QEMU_BINARY, ["-M", "q35", "-device", "help"], { encoding: "utf8" }).stdout ?? "";
  for (const device of ["intel-iommu", "edu", "isa-debug-exit"]) {
    if (!devices.includes(`"${device}"`)) return `${QEMU_BINARY} has no ${device} device`;
  }
  return null;
}

export function qemuArguments(options: QemuRunOptions): string[] {
  const iommu = [
    "intel-iommu",
    ...(options.interruptRemapping ?? true ? ["intremap=on", "eim=off"] : ["intremap=off"]),
    `caching-mode=${options.cachingMode ? "on" : "off"}`,
    `aw-bits=${options.awBits ?? 48}`,
    ...(options.scalableMode ? ["x-scalable-mode=on"] : []),
    ...(options.firstStage ? ["x-flts=on"] : []),
  ].join(",");
  return [
    "-M", "q35",
    "-accel", "tcg",
    "-device", iommu,
    // edu clamps DMA addresses to 28 bits unless told otherwise; the beyond-MGAW check needs 2^39.
    "-device", "edu,dma_mask=0xffffffffffffffff",
    "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    "-kernel", options.kernel,
    ...(options.cmdline ? ["-append", options.cmdline] : []),
    "-display", "none",
    "-serial", "stdio",
    "-no-reboot",
    "-nodefaults",
  ];
}

export function runOnQemu(options: QemuRunOptions): Promise<GuestRun> {
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(QEMU_BINARY, qemuArguments(options), { stdio: ["ignore", "pipe", "pipe"] });
    let transcript = "";
    let diagnostics = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (text: string) => (transcript += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (diagnostics += text));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 60_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      // isa-debug-exit turns the guest's code c into the exit status (c << 1) | 1.
      const exitCode = !timedOut && status !== null && status % 2 === 1 ? (status - 1) / 2 : null;
      if (exitCode === null && !timedOut) diagnostics += `\nqemu exited with status ${status} (not through port 0xF4)`;
      resolvePromise({ exitCode, timedOut, transcript, elapsedMs: performance.now() - started, diagnostics });
    });
  });
}

export interface TranscriptLine {
  kind: "RESULT" | "INFO" | "PLATFORM";
  name: string;
  value: string;
}

/** The transcript's lines with a kind; anything else (a stray message) is ignored. */
export function parseTranscript(transcript: string): TranscriptLine[] {
  const lines: TranscriptLine[] = [];
  for (const raw of transcript.split("\n")) {
    const match = /^(RESULT|INFO|PLATFORM) (\S+) ?(.*)$/.exec(raw.replace(/\r$/, ""));
    if (match) lines.push({ kind: match[1] as TranscriptLine["kind"], name: match[2]!, value: match[3]! });
  }
  return lines;
}

export function results(transcript: string): TranscriptLine[] {
  return parseTranscript(transcript).filter((line) => line.kind === "RESULT");
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href && /qemu\.ts$/.test(process.argv[1])) {
  const args = process.argv.slice(2);
  const appendAt = args.indexOf("--append");
  const awAt = args.indexOf("--aw-bits");
  const awBits = awAt >= 0 ? Number(args[awAt + 1]) : 48;
  if (awBits !== 39 && awBits !== 48) {
    console.error(`--aw-bits: expected 39 or 48, got ${args[awAt + 1]}`);
    process.exit(2);
  }
  const why = qemuUnavailable();
  if (why) {
    console.error(why);
    process.exit(2);
  }
  const run = await runOnQemu({
    kernel: await ensureFirmware(),
    cachingMode: args.includes("--cm"),
    awBits,
    scalableMode: args.includes("--scalable") || args.includes("--first-stage"),
    firstStage: args.includes("--first-stage"),
    ...(appendAt >= 0 ? { cmdline: args[appendAt + 1] ?? "" } : {}),
  });
  process.stdout.write(run.transcript);
  if (run.diagnostics) process.stderr.write(run.diagnostics + "\n");
  console.error(`exit code ${run.exitCode} timed out ${run.timedOut} in ${Math.round(run.elapsedMs)} ms`);
  process.exit(run.exitCode ?? 2);
}
