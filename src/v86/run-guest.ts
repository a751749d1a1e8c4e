/**
 * Node only: runMultibootGuest with v86.wasm read from the installed v86 package (patched and
 * compiled once per process) when no `wasmModule` is given. The run itself is attach-run.ts's.
 */
import { runMultibootGuest as runWithModule, type RunGuestOptions, type RunGuestResult } from "./attach-run.ts";
import { patchedV86Module } from "./v86-wasm.node.ts";

export { DEFAULT_TIMEOUT_MS, type RunGuestOptions, type RunGuestResult } from "./attach-run.ts";

/** Boots a multiboot guest with the vIOMMU attached and runs it to its exit (see attach-run.ts). */
export async function runMultibootGuest(options: RunGuestOptions): Promise<RunGuestResult> {
  return runWithModule({ ...options, wasmModule: options.wasmModule ?? (await patchedV86Module()) });
}
