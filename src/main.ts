/**
 * `npm start`: boots the VT-d test guest in v86 with the emulated IOMMU (caching mode on by
 * default), streams the guest's serial output, prints a summary and exits with the guest's status.
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArguments, USAGE } from "./cli/arguments.ts";
import { EXIT_TIMEOUT, EXIT_USAGE, runCommand } from "./cli/command.ts";
import { ensureFirmware } from "../firmware/build.ts";
import { formatSummary, TraceCounts } from "./cli/summary.ts";
import { runMultibootGuest } from "./v86/run-guest.ts";
import { EDU_FULL_DMA_MASK } from "./devices/edu.ts";
import { DEFAULT_NS_PER_INSTRUCTION } from "./v86/virtual-clock.ts";

runCommand(parseArguments, USAGE, async (args) => {
  // The test guest is rebuilt when its sources (or src/spec, which its header comes from) changed.
  const kernelPath = args.kernel ?? (await ensureFirmware());
  if (!existsSync(kernelPath)) {
    console.error(`error: option --kernel: ${kernelPath} does not exist`);
    return EXIT_USAGE;
  }
  const counts = new TraceCounts();
  const deterministic = args.deterministic ?? false;
  console.error(`booting ${kernelPath} (caching mode ${args.cachingMode ? "on" : "off"}, ${args.awBits}-bit address width${deterministic ? ", deterministic" : ""})`);
  const run = await runMultibootGuest({
    kernel: new Uint8Array(readFileSync(kernelPath)),
    cmdline: args.cmdline,
    vtd: { cachingMode: args.cachingMode, awBits: args.awBits },
    timeoutMs: args.timeoutSeconds * 1000,
    deterministic,
    // The test guest provokes a fault beyond MGAW: edu must not clip its bus addresses to 28 bits.
    eduDmaMask: EDU_FULL_DMA_MASK,
    onSerial: (text) => process.stdout.write(text),
    onReady: ({ device }) => void device.trace.subscribe(counts.listener),
  });
  if (!run.transcript.endsWith("\n")) process.stdout.write("\n");
  console.log(formatSummary({ ...run, counts }));
  if (deterministic) console.log(`guest time: ${run.guestMs.toFixed(3)} ms on the virtual clock (${DEFAULT_NS_PER_INSTRUCTION} ns per instruction)`);
  if (run.timedOut) return EXIT_TIMEOUT;
  return run.exitCode ?? 1;
});
