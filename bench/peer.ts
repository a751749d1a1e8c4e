/**
 * `npm run bench:peer`: this project's unit in v86 side by side with QEMU 10.0 TCG's intel-iommu
 * on the same guests. The Linux guest (the bzImage, initramfs and command line of `npm run linux`)
 * boots in every mode of bench:linux on both emulators and writes and reads its virtio-blk disk
 * with O_DIRECT; the C test guest makes edu DMA round trips translated (caching mode on) and with
 * translation off. Runs are interleaved (each run visits every mode on both emulators, in an order
 * that rotates), and the one markdown table holds medians: throughput, process CPU time and its
 * ratio to the emulator's own baseline, guest instructions where the emulator counts them.
 * Bundled by esbuild like bench:linux, so our code runs as a bundle does.
 *
 *   npm run bench:peer [-- --runs N --workload-mib N --dma-rounds N --qemu-dma-rounds N --guests linux|c|all]
 */
import { loadavg } from "node:os";
import { readFileSync } from "node:fs";
import { FIRMWARE_ELF } from "../firmware/build.ts";
import { qemuUnavailable } from "../firmware/qemu.ts";
import { ensureLinuxGuest } from "../firmware/linux/build.ts";
import { ArgumentError } from "../src/cli/options.ts";
import { formatMachine, machineInfo } from "./harness.ts";
import { LINUX_MODES, type LinuxMode } from "./linux-modes.ts";
import { qemuLinuxSample, qemuRoundTripSample } from "./peer-qemu.ts";
import { EMULATORS, formatPeerTable, parsePeerArguments, PEER_USAGE, runsGuest, type Emulator, type LinuxSample, type PeerArguments, type PeerMode, type PeerSamples, type RoundTripSample } from "./peer-table.ts";
import { v86LinuxSample, v86RoundTripSample } from "./peer-v86.ts";

export interface PeerPlan extends Pick<PeerArguments, "runs" | "workloadMiB" | "dmaRounds" | "qemuDmaRounds" | "guests"> {
  /** The C guest's ELF (firmware/build.ts builds it). */
  kernel: string;
  /** The Linux guest's files, when Linux runs. */
  linux?: { bzImage: string; initrd: string };
  modes?: readonly LinuxMode[];
  /** Progress lines. */
  log?: (line: string) => void;
}

const C_MODES = [
  { name: "translation off", translated: false },
  { name: "CM, translated", translated: true },
] as const;

function emptyMode<S>(name: string, baseline: boolean): PeerMode<S> {
  return { name, baseline, samples: { v86: [], qemu: [] } };
}

/** Each run: every mode on both emulators; the modes' order rotates by run, the emulators' alternates. */
export function interleaved<M>(modes: readonly M[], run: number): [M, Emulator][] {
  const order: [M, Emulator][] = [];
  const emulators = run % 2 ? [...EMULATORS].reverse() : EMULATORS;
  for (let i = 0; i < modes.length; i++) for (const emulator of emulators) order.push([modes[(i + run) % modes.length]!, emulator]);
  return order;
}

export async function runPeer(plan: PeerPlan): Promise<PeerSamples> {
  const log = plan.log ?? (() => {});
  const modes = plan.modes ?? LINUX_MODES;
  const samples: PeerSamples = {
    workloadMiB: plan.workloadMiB,
    dmaRounds: { v86: plan.dmaRounds, qemu: plan.qemuDmaRounds },
    linux: [],
    c: [],
  };
  const kernel = new Uint8Array(readFileSync(plan.kernel));
  if (runsGuest(plan.guests, "c")) {
    const cModes = C_MODES.map((m) => ({ ...m, record: emptyMode<RoundTripSample>(m.name, !m.translated) }));
    samples.c = cModes.map((m) => m.record);
    for (const translated of [false, true]) await v86RoundTripSample(kernel, translated, Math.min(plan.dmaRounds, 200)); // warms V8 up; not counted
    for (let run = 0; run < plan.runs; run++) {
      for (const [mode, emulator] of interleaved(cModes, run)) {
        const s = emulator === "v86" ? await v86RoundTripSample(kernel, mode.translated, plan.dmaRounds) : await qemuRoundTripSample(plan.kernel, mode.translated, plan.qemuDmaRounds);
        mode.record.samples[emulator].push(s);
        log(`  run ${run + 1}/${plan.runs} C guest ${mode.name} ${emulator}: ${s.cpuUsPerRound.toFixed(1)} µs CPU per round trip`);
      }
    }
  }
  if (runsGuest(plan.guests, "linux")) {
    if (!plan.linux) throw new Error("bench:peer: the Linux guest's files are needed");
    const files = plan.linux;
    const images = { bzImage: new Uint8Array(readFileSync(files.bzImage)), initrd: new Uint8Array(readFileSync(files.initrd)) };
    // As bench:linux: a disk 16 MiB larger than the workload, RAM for the pattern and its read-back copy.
    const diskMiB = plan.workloadMiB + 16;
    const memoryMiB = 64 + 2 * plan.workloadMiB + 64;
    const records = modes.map((m, i) => ({ mode: m, record: emptyMode<LinuxSample>(m.name, i === 0) }));
    samples.linux = records.map((r) => r.record);
    if (plan.runs > 1) await v86LinuxSample(images, modes[1] ?? modes[0]!, 1, diskMiB, memoryMiB); // warms V8 up; not counted
    for (let run = 0; run < plan.runs; run++) {
      for (const [{ mode, record }, emulator] of interleaved(records, run)) {
        const s = emulator === "v86"
          ? await v86LinuxSample(images, mode, plan.workloadMiB, diskMiB, memoryMiB)
          : await qemuLinuxSample(files, mode, plan.workloadMiB, diskMiB, memoryMiB);
        record.samples[emulator].push(s);
        log(`  run ${run + 1}/${plan.runs} Linux ${mode.short} ${emulator}: write ${s.writeMiBps.toFixed(1)} MiB/s, read ${s.readMiBps.toFixed(1)} MiB/s, ${s.cpuMsPerMiB.toFixed(1)} ms CPU per MiB`);
      }
    }
  }
  return samples;
}

async function main(argv: string[]): Promise<number> {
  let args: PeerArguments;
  try {
    args = parsePeerArguments(argv);
  } catch (error) {
    if (!(error instanceof ArgumentError)) throw error;
    console.error(`bench:peer: ${error.message}\n\n${PEER_USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(PEER_USAGE);
    return 0;
  }
  const why = qemuUnavailable();
  if (why) {
    console.error(`bench:peer: ${why}`);
    return 2;
  }
  const linux = runsGuest(args.guests, "linux") ? await ensureLinuxGuest() : undefined;
  console.log(formatMachine(machineInfo()));
  const loadBefore = loadavg()[0]!;
  const started = performance.now();
  const samples = await runPeer({ ...args, kernel: FIRMWARE_ELF, ...(linux ? { linux } : {}), log: (line) => console.error(line) });
  console.log(`load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after; ${args.runs} interleaved runs in ${((performance.now() - started) / 60_000).toFixed(1)} min\n`);
  console.log(formatPeerTable(samples));
  return 0;
}

// Run directly (npm run bench:peer bundles this file and runs the bundle).
if (/(bench[/\\]peer\.ts|bench-peer\.mjs)$/.test(process.argv[1] ?? "")) {
  main(process.argv.slice(2)).then(
    (status) => process.exit(status),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : String(error));
      process.exit(1);
    },
  );
}
