/**
 * `npm run linux`: builds the Linux guest when missing, boots it in v86 against our VT-d unit,
 * streams the console and prints the summary. Exit status: 0 all checks passed, 1 a check failed
 * (or the build, or the guest panicked/halted early), 124 timeout, 2 bad option.
 */
import { readFileSync } from "node:fs";
import { ensureLinuxGuest, LinuxBuildError } from "../../firmware/linux/build.ts";
import { EXIT_FAILED, EXIT_TIMEOUT, runCommand } from "../cli/command.ts";
import { LINUX_USAGE, parseLinuxArguments } from "./arguments.ts";
import { bootLinux, lastConsoleLines } from "./boot.ts";
import { formatLinuxSummary, linuxChecks } from "./summary.ts";

runCommand(parseLinuxArguments, LINUX_USAGE, async (args) => {
  let guest;
  try {
    guest = await ensureLinuxGuest({ force: args.rebuild });
  } catch (error) {
    if (!(error instanceof LinuxBuildError)) throw error;
    console.error(`error: the Linux guest could not be built: ${error.message}`);
    return EXIT_FAILED;
  }
  console.error(`booting ${guest.bzImage} (caching mode ${args.cachingMode ? "on" : "off"}, cmdline "${args.cmdline}", timeout ${args.timeoutSeconds} s)`);
  const run = await bootLinux({
    bzImage: new Uint8Array(readFileSync(guest.bzImage)),
    initrd: new Uint8Array(readFileSync(guest.initrd)),
    cmdline: args.cmdline,
    vtd: { cachingMode: args.cachingMode },
    deterministic: args.deterministic,
    workloadMiB: args.workloadMiB,
    timeoutMs: args.timeoutSeconds * 1000,
    ...(args.quiet ? {} : { onConsole: (text: string) => process.stdout.write(text) }),
  });
  if (!args.quiet && !run.console.endsWith("\n")) process.stdout.write("\n");
  const checks = linuxChecks(run);
  console.log(formatLinuxSummary(run, checks));
  if (run.outcome !== "completed") {
    const why = run.outcome === "timeout" ? `timed out after ${args.timeoutSeconds} s` : run.outcome === "panic" ? "the kernel panicked" : `the guest ended early (${run.outcome})`;
    console.error(`error: ${why}; last console lines:\n${lastConsoleLines(run.console)}`);
    return run.outcome === "timeout" ? EXIT_TIMEOUT : EXIT_FAILED;
  }
  const failed = checks.filter((check) => !check.ok);
  if (failed.length > 0) {
    console.error(`error: ${failed.map((check) => check.name).join("; ")} failed`);
    return EXIT_FAILED;
  }
  return 0;
});
