/**
 * The cost of one guest MMIO access to the VT-d unit in v86: a guest loop of N reads (or writes)
 * of a unit register, timed from run to exit, against the same loop reading a trivial v86 MMIO
 * register (a 32-bit handler returning a constant, mapped through the same `mmap_register`: the
 * floor of any MMIO access in v86) and against RAM.
 */
import type { BenchReporter } from "./harness.ts";
import { Machine } from "../src/v86/machine.ts";
import { installPlatform } from "../src/v86/platform.ts";
import { patchedV86Module } from "../src/v86/v86-wasm.node.ts";
import { VTD_UNIT_BASE } from "../src/v86/unit-mmio.ts";
import { Reg } from "../src/spec/index.ts";
import { flatMultibootImage } from "../test/support/multiboot-images.ts";

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

/** mov ecx, n; [mov eax, imm]; loop: mov eax, [address] | mov [address], eax; dec ecx; jnz loop; exit 0 */
function loopImage(address: number, iterations: number, write: boolean): Uint8Array {
  return flatMultibootImage([
    0xb9, ...le32(iterations),
    0xb8, ...le32(0x41),
    write ? 0xa3 : 0xa1, ...le32(address),
    0x49,
    0x75, 0xf8,
    0xb0, 0x00, 0xe6, 0xf4,
  ]);
}

/** A 128 KiB block nothing else maps, holding the trivial register. */
const TRIVIAL_MMIO = 0xfe00_0000;

async function nsPerIteration(address: number, iterations: number, write: boolean): Promise<number> {
  const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: loopImage(address, iterations, write) });
  installPlatform(machine, { multibootInfoAddress: machine.cpu.reg32[3]! >>> 0 });
  machine.cpu.io.mmap_register(TRIVIAL_MMIO, 0x2_0000, () => 0x5a, () => {}, () => 0x5a5a_5a5a, () => {});
  const outcome = await machine.run(120_000);
  if (outcome.exitCode !== 0) throw new Error(`bench guest did not exit cleanly: ${outcome.reason}`);
  return (outcome.elapsedMs * 1e6) / iterations;
}

function median(samples: number[]): number {
  return [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
}

export default async (r: BenchReporter): Promise<void> => {
  const n = 2_000_000;
  // Interleaved rounds: host load changes alike for the unit and its baselines.
  const samples = { ram: [] as number[], trivial: [] as number[], read: [] as number[], write: [] as number[] };
  for (let round = 0; round < 5; round++) {
    samples.ram.push(await nsPerIteration(0x20_0000, n * 10, false));
    samples.trivial.push(await nsPerIteration(TRIVIAL_MMIO, n, false));
    samples.read.push(await nsPerIteration(VTD_UNIT_BASE + Reg.CAP, n, false));
    samples.write.push(await nsPerIteration(VTD_UNIT_BASE + Reg.FEDATA, n, true));
  }
  const ram = median(samples.ram), trivial = median(samples.trivial), unitRead = median(samples.read), unitWrite = median(samples.write);
  r.figure("guest loop iteration, 32-bit RAM read", ram, "ns", { baseline: trivial, baselineName: "trivial v86 MMIO read" });
  r.figure("guest loop iteration, 32-bit read of a trivial v86 MMIO register", trivial, "ns", { baseline: ram, baselineName: "RAM read" });
  r.figure("guest loop iteration, 32-bit VT-d register read (CAP)", unitRead, "ns", {
    baseline: trivial, baselineName: "trivial v86 MMIO read", target: "ratio ≤ 2", met: unitRead <= 2 * trivial,
  });
  r.figure("guest loop iteration, 32-bit VT-d register write (FEDATA)", unitWrite, "ns", { baseline: trivial, baselineName: "trivial v86 MMIO read" });
};
