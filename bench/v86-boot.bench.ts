/**
 * Boot-to-exit of the C test guest in v86 with the unit translating against the same guest with
 * translation off (`translation-off`: the unit is present, TE is never set, edu DMAs to physical
 * addresses). Both runs add the same DMA workload (`dma-rounds=N`) so that translation has
 * something to cost; the figure is the median of a few runs of each, interleaved.
 */
import { readFile } from "node:fs/promises";
import type { BenchReporter } from "./harness.ts";
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { runMultibootGuest } from "../src/v86/run-guest.ts";

const ROUNDS = 4000;
const RUNS = 5;

interface Sample {
  ms: number;
  iotlbHits: number;
}

async function boot(kernel: Uint8Array, cmdline: string): Promise<Sample> {
  const run = await runMultibootGuest({ kernel, cmdline, vtd: { cachingMode: true }, eduDmaMask: EDU_FULL_DMA_MASK, timeoutMs: 120_000 });
  if (run.exitCode !== 0) throw new Error(`bench guest (${cmdline}) ended with ${run.stopReason}, exit ${run.exitCode}:\n${run.transcript.slice(-2000)}`);
  return { ms: run.elapsedMs, iotlbHits: run.device.stats.iotlbHits };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;

export default async (r: BenchReporter): Promise<void> => {
  // `npm run bench` builds the firmware first (firmware/build.ts cannot be bundled: it finds its sources by its own path).
  const kernel = new Uint8Array(await readFile("build/firmware/vtd-test.elf"));
  const on: Sample[] = [];
  const off: Sample[] = [];
  for (let i = 0; i < RUNS; i++) {
    off.push(await boot(kernel, `translation-off dma-rounds=${ROUNDS}`));
    on.push(await boot(kernel, `dma-rounds=${ROUNDS}`));
  }
  const onMs = median(on.map((s) => s.ms));
  const offMs = median(off.map((s) => s.ms));
  r.figure(`test guest boot-to-exit, translation off, ${ROUNDS} DMA round trips`, offMs, "ms");
  r.figure(`test guest boot-to-exit, CM=1 translating, ${ROUNDS} DMA round trips`, onMs, "ms", { baseline: offMs, baselineName: "translation off" });
  r.figure("  IOTLB hits in a translating run", on[0]!.iotlbHits, "hits");
  r.figure("  IOTLB hits in an untranslated run", off[0]!.iotlbHits, "hits");
};
