/**
 * bench:peer's v86 side: the same guests in v86 with this project's unit, as bench:linux and the
 * v86-boot benchmark run them (src/linux/boot.ts, src/v86/run-guest.ts). This process's CPU time
 * (process.cpuUsage, every thread) and v86's guest instruction count are taken at console lines.
 */
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { bootLinux, lastConsoleLines, type Mark } from "../src/linux/boot.ts";
import { consoleLines } from "../src/linux/guest-report.ts";
import { hostDiskSha256, linuxFigures } from "../src/linux/summary.ts";
import type { Machine } from "../src/v86/machine.ts";
import { runMultibootGuest } from "../src/v86/run-guest.ts";
import { processCpuMs, type LinuxMode } from "./linux-modes.ts";
import { linuxSample, roundTripSample, WORKLOAD_MARKS, type ConsoleMark, type LinuxSample, type RoundTripSample } from "./peer-table.ts";

export interface LinuxImages {
  bzImage: Uint8Array;
  initrd: Uint8Array;
}

/** One Linux boot in v86 doing init's workload; the data is checked on the host's disk. */
export async function v86LinuxSample(images: LinuxImages, mode: LinuxMode, workloadMiB: number, diskMiB: number, memoryMiB: number): Promise<LinuxSample> {
  const cpu: Partial<Record<Mark, number>> = {};
  const run = await bootLinux({
    ...images, cmdline: mode.cmdline, vtd: mode.vtd, workloadMiB, diskMiB, memoryMiB, timeoutMs: 600_000,
    onMark: (mark) => void (cpu[mark] = processCpuMs()),
  });
  const f = linuxFigures(run);
  if (run.outcome !== "completed" || !f.workload) throw new Error(`bench:peer: v86 ${mode.name}: the boot ended with ${run.outcome}:\n${lastConsoleLines(run.console)}`);
  if (hostDiskSha256(run, f.workload.mib) !== f.workload.patternSha256) throw new Error(`bench:peer: v86 ${mode.name}: the host's disk does not hold the pattern the guest wrote`);
  const marks: Partial<Record<(typeof WORKLOAD_MARKS)[number], ConsoleMark>> = {};
  for (const name of WORKLOAD_MARKS) {
    const record = run.marks[name];
    const cpuMs = cpu[name];
    if (record && cpuMs !== undefined) marks[name] = { line: name, cpuMs, wallMs: record.hostMs, instructions: record.instructions };
  }
  return linuxSample(marks, f.workload.mib);
}

/** The C guest in v86 (caching mode on, as `npm start`), its round trips translated or not. */
export async function v86RoundTripSample(kernel: Uint8Array, translated: boolean, rounds: number): Promise<RoundTripSample> {
  const cmdline = `${translated ? "" : "translation-off "}dma-rounds=${rounds}`;
  const marks: ConsoleMark[] = [];
  let machine: Machine | undefined;
  let partial = "";
  const started = performance.now();
  const run = await runMultibootGuest({
    kernel, cmdline, vtd: { cachingMode: true }, eduDmaMask: EDU_FULL_DMA_MASK, timeoutMs: 120_000 + rounds * 10,
    onReady: (parts) => void (machine = parts.machine),
    onSerial: (text) => {
      if (!text.includes("\n")) {
        partial += text;
        return;
      }
      const lines = consoleLines(partial + text);
      partial = lines.pop() ?? "";
      const mark = { cpuMs: processCpuMs(), wallMs: performance.now() - started, instructions: machine ? machine.instructions : null };
      for (const line of lines) marks.push({ line, ...mark });
    },
  });
  if (run.exitCode !== 0) throw new Error(`bench:peer: v86 C guest (${cmdline}) ended with ${run.stopReason}, exit ${run.exitCode}:\n${run.transcript.slice(-2000)}`);
  return roundTripSample(marks, rounds);
}
