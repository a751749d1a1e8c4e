/**
 * Boots a multiboot guest in a v86 machine of ours with the vIOMMU attached (attachVtd, as a user
 * would) and runs it to its exit. No node: imports: the caller passes the patched v86 module
 * (compilePatchedV86); in Node, run-guest.ts reads it from the installed v86 package.
 */
import type { EduDevice } from "../devices/edu.ts";
import type { VtdDevice, VtdOptions } from "../vtd-device/index.ts";
import { attachVtd, type VtdAttachment } from "./attach.ts";
import { Machine, type StopReason } from "./machine.ts";
import { checkMultibootImage } from "./multiboot.ts";
import type { DeterministicOptions } from "./virtual-clock.ts";

export interface RunGuestOptions {
  kernel: Uint8Array;
  /** v86.wasm patched and compiled (compilePatchedV86). The Node entry's runMultibootGuest reads the installed one when absent. */
  wasmModule?: WebAssembly.Module;
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
  onReady?: (parts: { device: VtdDevice; edu: EduDevice; machine: Machine; attachment: VtdAttachment }) => void;
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
  /** The attached unit's handle (the machine is stopped). */
  attachment: VtdAttachment;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export async function runMultibootGuest(options: RunGuestOptions): Promise<RunGuestResult> {
  if (!(options.kernel instanceof Uint8Array)) throw new TypeError("runMultibootGuest: kernel must be a Uint8Array");
  checkMultibootImage(options.kernel);
  const memoryMiB = options.memoryMiB ?? 64;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 2 || memoryMiB > 2048) throw new RangeError(`runMultibootGuest: memoryMiB ${memoryMiB} must be 2..2048`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new RangeError(`runMultibootGuest: timeoutMs ${timeoutMs} must be > 0`);

  if (!(options.wasmModule instanceof WebAssembly.Module)) {
    throw new TypeError("runMultibootGuest: option wasmModule is required here (compilePatchedV86(bytes of v86.wasm)); in Node, import runMultibootGuest from v86-vtd/v86/node");
  }

  const started = performance.now();
  const machine = await Machine.create({
    wasmModule: options.wasmModule,
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
  // The same entry a user's own V86 takes: the DMAR goes into RAM, edu decodes as SeaBIOS left it.
  const attachment = attachVtd(machine.emulator, {
    ...options.vtd,
    acpi: "ram",
    ...(options.eduDmaDelayMs !== undefined ? { eduDmaDelayMs: options.eduDmaDelayMs } : {}),
    ...(options.eduDmaMask !== undefined ? { eduDmaMask: options.eduDmaMask } : {}),
  });
  const platform = attachment.platform;
  options.onReady?.({ device: platform.device, edu: platform.edu, machine, attachment });
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
    attachment,
  };
}
