/**
 * What every command of ours does around its own work: parse the options (a mistake is named
 * with the usage, exit 2), answer --help, run, and exit with the status (an unexpected error
 * prints its message, exit 1).
 */
import { ArgumentError } from "./options.ts";

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_TIMEOUT = 124;

export function runCommand<A extends { help?: boolean }>(
  parse: (argv: readonly string[]) => A,
  usage: string,
  run: (args: A) => Promise<number>,
  argv: readonly string[] = process.argv.slice(2),
): void {
  const main = async (): Promise<number> => {
    let args: A;
    try {
      args = parse(argv);
    } catch (error) {
      if (!(error instanceof ArgumentError)) throw error;
      console.error(`error: ${error.message}\n\n${usage}`);
      return EXIT_USAGE;
    }
    if (args.help) {
      console.log(usage);
      return 0;
    }
    try {
      return await run(args);
    } catch (error) {
      // An option found bad only when the command acts on it (an unwritable --trace file).
      if (!(error instanceof ArgumentError)) throw error;
      console.error(`error: ${error.message}`);
      return EXIT_USAGE;
    }
  };
  main().then(exitAfterOutput, (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    exitAfterOutput(EXIT_FAILED);
  });
}

/**
 * Exits once everything written to stdout and stderr has left the process: writes to a pipe are
 * asynchronous, and a plain process.exit could cut the summary off the end of a run's output.
 */
function exitAfterOutput(status: number): void {
  process.exitCode = status;
  process.stdout.write("", () => process.stderr.write("", () => process.exit(status)));
}
