/**
 * Boots a multiboot guest in v86 with the vIOMMU and the edu device, and runs it to its exit.
 * Node only (it loads v86.wasm from the installed package).
 */
import type { EduDevice } from "../devices/edu.ts";
import type { VtdDevice, VtdOptions } from "../vtd-device/index.ts";
import { Machine, type StopReason } from "./machine.ts";
import { checkMultibootImage, provideMemoryFields } from "./multiboot.ts";
import { installPlatform } from "./platform.ts";
import { patchedV86Module } from "./v86-wasm.node.ts";
import type { DeterministicOptions } from "./virtual-clock.ts";

export interface RunGuestOptions {
  kernel: Uint8Array;
  cmdline?: string;
  vtd?: Omit<VtdOptions, "memory" | "onInterrupt">;
  /** Guest RAM in MiB. Default 64. */
  memoryMiB?: number;
  /** Wall-clock limit. Default 30000. */
  timeoutMs?: number;
  /** Receives the guest's serial output as it comes. */
  onSerial?: (text: string) => void;
  /** edu DMA completion delay. Default 0 (the next safe point); QEMU uses 100. */
  eduDmaDelayMs?: number;
  /** edu's DMA mask. Default (1 << 28) - 1, as QEMU's edu; the test guest needs all ones (as QEMU's `dma_mask`). */
  eduDmaMask?: bigint;
  /** Called once the machine is set up, before the guest runs (e.g. to subscribe to traces). */
  onReady?: (parts: { device: VtdDevice; edu: EduDevice; machine: Machine }) => void;
  /** Interpreter only. Default false. */
  disableJit?: boolean;
  /**
   * Guest time follows guest instructions (see MachineOptions.deterministic): the same guest with
   * the same options gives the same transcript and the same unit trace, whatever the host does.
   */
  deterministic?: boolean | DeterministicOptions;
}

export interface RunGuestResult {
  exitCode: number | null;
  timedOut: boolean;
  transcript: string;
  device: VtdDevice;
  edu: EduDevice;
  elapsedMs: number;
  instructions?: number;
  /** Guest time at the end, in ms (the virtual clock when deterministic). */
  guestMs: number;
  /** Why the run ended: the exit port, the timeout, or HLT with interrupts off. */
  stopReason: StopReason;
  /** CLFLUSH instructions the guest executed. */
  clflushes: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export async function runMultibootGuest(options: RunGuestOptions): Promise<RunGuestResult> {
  if (!(options.kernel instanceof Uint8Array)) throw new TypeError("runMultibootGuest: kernel must be a Uint8Array");
  checkMultibootImage(options.kernel);
  const memoryMiB = options.memoryMiB ?? 64;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 2 || memoryMiB > 2048) throw new RangeError(`runMultibootGuest: memoryMiB ${memoryMiB} must be 2..2048`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new RangeError(`runMultibootGuest: timeoutMs ${timeoutMs} must be > 0`);

  const started = performance.now();
  const machine = await Machine.create({
    wasmModule: await patchedV86Module(),
    memoryBytes: memoryMiB * 2 ** 20,
    multiboot: options.kernel,
    cmdline: options.cmdline ?? "",
    disableJit: options.disableJit,
    deterministic: options.deterministic,
  });
  let transcript = "";
  machine.onSerial((text) => {
    transcript += text;
    options.onSerial?.(text);
  });
  const multibootInfoAddress = machine.cpu.reg32[3]! >>> 0;
  const platform = installPlatform(machine, {
    vtd: options.vtd,
    eduDmaDelayMs: options.eduDmaDelayMs,
    ...(options.eduDmaMask !== undefined ? { eduDmaMask: options.eduDmaMask } : {}),
    multibootInfoAddress,
  });
  // No firmware runs: hand the guest what QEMU's multiboot loader and SeaBIOS would have.
  provideMemoryFields(machine.memory, multibootInfoAddress, memoryMiB * 2 ** 20);
  platform.bus.leaveAsFirmwareWould();
  options.onReady?.({ device: platform.device, edu: platform.edu, machine });
  const outcome = await machine.run(timeoutMs);
  return {
    exitCode: outcome.exitCode,
    timedOut: outcome.reason === "timeout",
    transcript,
    device: platform.device,
    edu: platform.edu,
    elapsedMs: performance.now() - started,
    instructions: outcome.instructions,
    guestMs: outcome.guestMs,
    stopReason: outcome.reason,
    clflushes: machine.clflush.count,
  };
}
