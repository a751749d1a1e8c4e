/**
 * The cost of one guest MMIO access to the VT-d unit in v86: a guest loop of N reads (or writes)
 * of a unit register, timed from run to exit, against the same loop on RAM.
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

async function nsPerIteration(address: number, iterations: number, write: boolean): Promise<number> {
  const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: loopImage(address, iterations, write) });
  installPlatform(machine, { multibootInfoAddress: machine.cpu.reg32[3]! >>> 0 });
  const outcome = await machine.run(120_000);
  if (outcome.exitCode !== 0) throw new Error(`bench guest did not exit cleanly: ${outcome.reason}`);
  return (outcome.elapsedMs * 1e6) / iterations;
}

async function median(rounds: number, measure: () => Promise<number>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) samples.push(await measure());
  return samples.sort((a, b) => a - b)[Math.floor(rounds / 2)]!;
}

export default async (r: BenchReporter): Promise<void> => {
  const n = 2_000_000;
  const ram = await median(3, () => nsPerIteration(0x20_0000, n * 10, false));
  const unitRead = await median(3, () => nsPerIteration(VTD_UNIT_BASE + Reg.CAP, n, false));
  const unitWrite = await median(3, () => nsPerIteration(VTD_UNIT_BASE + Reg.FEDATA, n, true));
  r.figure("guest loop iteration, 32-bit RAM read", ram, "ns");
  r.figure("guest loop iteration, 32-bit VT-d register read (CAP)", unitRead, "ns", { baseline: ram, baselineName: "RAM read" });
  r.figure("guest loop iteration, 32-bit VT-d register write (FEDATA)", unitWrite, "ns", { baseline: ram, baselineName: "RAM read" });
};
