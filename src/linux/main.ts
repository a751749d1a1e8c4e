/**
 * `npm run linux`: builds the Linux guest when missing, boots it in v86 against our VT-d unit,
 * streams the console and prints the summary. Exit status: 0 all checks passed, 1 a check failed
 * (or the build, or the guest panicked/halted early), 124 timeout, 2 bad option.
 * With --checker, --trace, --dump and --compare-caching-mode it explains what the unit saw.
 */
import { readFileSync } from "node:fs";
import { ensureLinuxGuest, LinuxBuildError } from "../../firmware/linux/build.ts";
import { EXIT_FAILED, EXIT_TIMEOUT, runCommand } from "../cli/command.ts";
import { formatDump } from "../cli/dump.ts";
import { ExplainRecorder, explainMissingCmInvalidations, formatCachingModeComparison, formatCheckerReports, runFigures } from "../cli/explain.ts";
import { openTraceFile, type TraceFile } from "../cli/trace-file.ts";
import { LINUX_USAGE, parseLinuxArguments, scalableOptions, type LinuxArguments } from "./arguments.ts";
import { bootLinux, lastConsoleLines, type LinuxRun } from "./boot.ts";
import { formatLinuxSummary, linuxChecks, type Check } from "./summary.ts";

interface Guest {
  bzImage: Uint8Array;
  initrd: Uint8Array;
}

interface OneRun {
  run: LinuxRun;
  recorder: ExplainRecorder | undefined;
}

async function bootOnce(args: LinuxArguments, guest: Guest, cachingMode: boolean, trace: TraceFile | undefined, label: string | undefined, stream: boolean): Promise<OneRun> {
  // The strict checker walks the tables on every request: only when asked for (a Linux boot makes many).
  const recorder = args.checker ? new ExplainRecorder() : undefined;
  const run = await bootLinux({
    ...guest,
    cmdline: args.cmdline,
    vtd: { cachingMode, ...scalableOptions(args), ...(recorder ? { checker: recorder.checkerOption } : {}) },
    deterministic: args.deterministic,
    workloadMiB: args.workloadMiB,
    timeoutMs: args.timeoutSeconds * 1000,
    ...(stream ? { onConsole: (text: string) => void process.stdout.write(text) } : {}),
    onReady: ({ platform }) => {
      recorder?.attach(platform.device);
      trace?.attach(platform.device, label);
    },
  });
  trace?.detach();
  return { run, recorder };
}

/** ", scalable mode (first and second stage)" when the unit is in scalable mode. */
function unitMode(args: LinuxArguments): string {
  const o = scalableOptions(args);
  if (!o.scalableMode) return "";
  const stages = [o.firstStage ? "first" : "", o.secondStage ? "second" : ""].filter(Boolean);
  return `, scalable mode (${stages.join(" and ")} stage)`;
}

function explainRun(args: LinuxArguments, one: OneRun): string[] {
  const out: string[] = [];
  if (one.recorder) {
    const cm = explainMissingCmInvalidations(one.recorder);
    if (cm) out.push(cm);
    out.push(formatCheckerReports(one.recorder));
  }
  if (args.dump) out.push(formatDump(one.run.platform.device));
  return out;
}

/** The exit status of one run and, when it is not 0, why (with the last console lines). */
function verdict(args: LinuxArguments, run: LinuxRun, checks: Check[]): { status: number; why?: string } {
  if (run.outcome !== "completed") {
    const why = run.outcome === "timeout" ? `timed out after ${args.timeoutSeconds} s` : run.outcome === "panic" ? "the kernel panicked" : `the guest ended early (${run.outcome})`;
    return { status: run.outcome === "timeout" ? EXIT_TIMEOUT : EXIT_FAILED, why: `${why}; last console lines:\n${lastConsoleLines(run.console)}` };
  }
  const failed = checks.filter((check) => !check.ok);
  if (failed.length > 0) return { status: EXIT_FAILED, why: `${failed.map((check) => check.name).join("; ")} failed` };
  return { status: 0 };
}

runCommand(parseLinuxArguments, LINUX_USAGE, async (args) => {
  const trace = openTraceFile(args.trace, args.traceEvents);
  try {
    let built;
    try {
      built = await ensureLinuxGuest({ force: args.rebuild });
    } catch (error) {
      if (!(error instanceof LinuxBuildError)) throw error;
      console.error(`error: the Linux guest could not be built: ${error.message}`);
      return EXIT_FAILED;
    }
    const guest: Guest = { bzImage: new Uint8Array(readFileSync(built.bzImage)), initrd: new Uint8Array(readFileSync(built.initrd)) };

    if (args.compareCachingMode) {
      const runs: OneRun[] = [];
      for (const cachingMode of [false, true]) {
        console.error(`booting ${built.bzImage} (caching mode ${cachingMode ? "on" : "off"}${unitMode(args)}, cmdline "${args.cmdline}", timeout ${args.timeoutSeconds} s) for the comparison`);
        const one = await bootOnce(args, guest, cachingMode, trace, `cm=${cachingMode ? 1 : 0}`, false);
        console.error(`  CM=${cachingMode ? 1 : 0}: ${one.run.outcome} after ${(one.run.elapsedMs / 1000).toFixed(2)} s`);
        runs.push(one);
      }
      const figures = runs.map(({ run }, i) => runFigures(run.platform.device, i === 1, { hostMs: run.elapsedMs, instructions: run.instructions, outcome: run.outcome }));
      console.log(formatCachingModeComparison(figures[0]!, figures[1]!, args.deterministic));
      let status = 0;
      runs.forEach((one, i) => {
        const checks = linuxChecks(one.run);
        const failed = checks.filter((c) => !c.ok).map((c) => c.name);
        console.log(`CM=${i}: ${failed.length === 0 ? "all checks passed" : `failed: ${failed.join("; ")}`}`);
        const out = explainRun(args, one);
        if (out.length > 0) console.log(`\n== run with CM=${i} ==\n${out.join("\n\n")}`);
        const v = verdict(args, one.run, checks);
        if (v.status !== 0 && status === 0) {
          status = v.status;
          console.error(`error: CM=${i}: ${v.why}`);
        }
      });
      return status;
    }

    console.error(`booting ${built.bzImage} (caching mode ${args.cachingMode ? "on" : "off"}${unitMode(args)}, cmdline "${args.cmdline}", timeout ${args.timeoutSeconds} s)`);
    const one = await bootOnce(args, guest, args.cachingMode, trace, undefined, !args.quiet);
    const { run } = one;
    if (!args.quiet && !run.console.endsWith("\n")) process.stdout.write("\n");
    const checks = linuxChecks(run);
    console.log(formatLinuxSummary(run, checks));
    const out = explainRun(args, one);
    if (out.length > 0) console.log(`\n${out.join("\n\n")}`);
    if (trace) console.error(`trace: ${trace.events} events written to ${trace.path}`);
    const v = verdict(args, run, checks);
    if (v.why) console.error(`error: ${v.why}`);
    return v.status;
  } finally {
    trace?.close();
  }
});
