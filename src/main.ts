/**
 * `npm start`: boots the VT-d test guest in v86 with the emulated IOMMU (caching mode on by
 * default), streams the guest's serial output, prints a summary and exits with the guest's status.
 * It explains what it saw: a skipped caching-mode invalidation in plain words, and on request the
 * strict checker's reports (--checker), the unit's trace (--trace), its state at exit (--dump) and
 * a CM=0 / CM=1 comparison (--compare-caching-mode).
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArguments, scalableOptions, USAGE, type MainArguments } from "./cli/arguments.ts";
import { EXIT_TIMEOUT, runCommand } from "./cli/command.ts";
import { ArgumentError } from "./cli/options.ts";
import { ensureFirmware } from "../firmware/build.ts";
import { formatDump } from "./cli/dump.ts";
import { ExplainRecorder, explainMissingCmInvalidations, explainUnflushedTableWrites, formatCachingModeComparison, formatCheckerReports, runFigures } from "./cli/explain.ts";
import { formatSummary } from "./cli/summary.ts";
import { openTraceFile, type TraceFile } from "./cli/trace-file.ts";
import { runMultibootGuest, type RunGuestResult } from "./v86/run-guest.ts";
import { EDU_FULL_DMA_MASK } from "./devices/edu.ts";
import { DEFAULT_NS_PER_INSTRUCTION } from "./v86/virtual-clock.ts";

interface OneRun {
  run: RunGuestResult;
  recorder: ExplainRecorder;
}

async function runOnce(args: MainArguments, kernel: Uint8Array, cachingMode: boolean, trace: TraceFile | undefined, label: string | undefined, stream: boolean): Promise<OneRun> {
  const recorder = new ExplainRecorder();
  const run = await runMultibootGuest({
    kernel,
    cmdline: args.cmdline,
    // The strict checker is always on here: it explains a skipped invalidation without --checker (it costs little on this guest).
    vtd: { cachingMode, awBits: args.awBits, checker: recorder.checkerOption, ...scalableOptions(args) },
    timeoutMs: args.timeoutSeconds * 1000,
    deterministic: args.deterministic ?? false,
    // The test guest provokes a fault beyond MGAW: edu must not clip its bus addresses to 28 bits.
    eduDmaMask: EDU_FULL_DMA_MASK,
    ...(stream ? { onSerial: (text: string) => void process.stdout.write(text) } : {}),
    onReady: ({ device }) => {
      recorder.attach(device);
      trace?.attach(device, label);
    },
  });
  trace?.detach();
  return { run, recorder };
}

/** What the guest's transcript and the checker say about a skipped caching-mode invalidation. */
function cmExplanation(args: MainArguments, cachingMode: boolean, one: OneRun): string | undefined {
  const explained = explainMissingCmInvalidations(one.recorder);
  if (explained) return explained;
  if (/\bRESULT cm\.stale-fault OBSERVED\b/.test(one.run.transcript)) {
    return "== what happened: a caching-mode invalidation was left out ==\nthe guest made an entry present without invalidating under CM=1 and the unit faulted on the not-present entry it had cached (negative caching); the strict checker saw no request meet it, so no more detail is known (VT-d §6.1).";
  }
  if (/\bskip-cm-invalidation\b/.test(args.cmdline) && !cachingMode) {
    return "note: skip-cm-invalidation has no effect with CM=0: the unit caches no not-present entry, so making an entry present needs no invalidation (VT-d §6.1).";
  }
  return undefined;
}

function explainRun(args: MainArguments, cachingMode: boolean, one: OneRun): string[] {
  const out: string[] = [];
  const cm = cmExplanation(args, cachingMode, one);
  if (cm) out.push(cm);
  const flush = explainUnflushedTableWrites(one.recorder);
  if (flush) out.push(flush);
  if (args.checker) out.push(formatCheckerReports(one.recorder));
  if (args.dump) out.push(formatDump(one.run.device));
  return out;
}

function outcome(run: RunGuestResult): string {
  return run.timedOut ? "timeout" : run.exitCode === null ? "halted" : `exit ${run.exitCode}`;
}

function status(run: RunGuestResult): number {
  return run.timedOut ? EXIT_TIMEOUT : (run.exitCode ?? 1);
}

runCommand(parseArguments, USAGE, async (args) => {
  const trace = openTraceFile(args.trace, args.traceEvents);
  try {
    // The test guest is rebuilt when its sources (or src/spec, which its header comes from) changed.
    const kernelPath = args.kernel ?? (await ensureFirmware());
    if (!existsSync(kernelPath)) throw new ArgumentError(`option --kernel: ${kernelPath} does not exist`);
    const kernel = new Uint8Array(readFileSync(kernelPath));
    const deterministic = args.deterministic ?? false;
    scalableOptions(args); // refuses a combination the unit would refuse, before booting
    const mode = args.scalableMode ? `, scalable mode${args.firstStage ? " (first stage)" : ""}` : "";
    const how = `${args.awBits}-bit address width${mode}${deterministic ? ", deterministic" : ""}`;

    if (args.compareCachingMode) {
      const runs: OneRun[] = [];
      for (const cachingMode of [false, true]) {
        console.error(`booting ${kernelPath} (caching mode ${cachingMode ? "on" : "off"}, ${how}) for the comparison`);
        const one = await runOnce(args, kernel, cachingMode, trace, `cm=${cachingMode ? 1 : 0}`, false);
        console.error(`  CM=${cachingMode ? 1 : 0}: ${outcome(one.run)} after ${(one.run.elapsedMs / 1000).toFixed(2)} s`);
        runs.push(one);
      }
      const figures = runs.map((one, i) => runFigures(one.run.device, i === 1, {
        hostMs: one.run.elapsedMs, guestMs: one.run.guestMs, instructions: one.run.instructions, outcome: outcome(one.run),
      }));
      console.log(formatCachingModeComparison(figures[0]!, figures[1]!, deterministic));
      runs.forEach((one, i) => {
        const out = explainRun(args, i === 1, one);
        if (out.length > 0) console.log(`\n== run with CM=${i} ==\n${out.join("\n\n")}`);
      });
      const bad = runs.find((one) => status(one.run) !== 0);
      return bad ? status(bad.run) : 0;
    }

    console.error(`booting ${kernelPath} (caching mode ${args.cachingMode ? "on" : "off"}, ${how})`);
    const one = await runOnce(args, kernel, args.cachingMode, trace, undefined, true);
    const { run } = one;
    if (!run.transcript.endsWith("\n")) process.stdout.write("\n");
    console.log(formatSummary(run));
    if (deterministic) console.log(`guest time: ${run.guestMs.toFixed(3)} ms on the virtual clock (${DEFAULT_NS_PER_INSTRUCTION} ns per instruction)`);
    const out = explainRun(args, args.cachingMode, one);
    if (out.length > 0) console.log(`\n${out.join("\n\n")}`);
    if (trace) console.error(`trace: ${trace.events} events written to ${trace.path}`);
    return status(run);
  } finally {
    trace?.close();
  }
});
