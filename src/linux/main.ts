/**
 * `npm run linux`: builds the Linux guest when missing, boots it in v86 against our VT-d unit,
 * streams the console and prints the summary. Exit status: 0 all checks passed, 1 a check failed
 * (or the build, or the guest panicked/halted early), 124 timeout, 2 bad option.
 */
import { readFileSync } from "node:fs";
import { ensureLinuxGuest, LinuxBuildError } from "../../firmware/linux/build.ts";
import { LinuxArgumentError, LINUX_USAGE, parseLinuxArguments } from "./arguments.ts";
import { bootLinux, lastConsoleLines } from "./boot.ts";
import { formatLinuxSummary, linuxChecks } from "./summary.ts";

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_TIMEOUT = 124;

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseLinuxArguments(argv);
  } catch (error) {
    if (!(error instanceof LinuxArgumentError)) throw error;
    console.error(`error: ${error.message}\n\n${LINUX_USAGE}`);
    return EXIT_USAGE;
  }
  if (args.help) {
    console.log(LINUX_USAGE);
    return 0;
  }
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
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
