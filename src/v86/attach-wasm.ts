/**
 * The wasm side of attaching: v86 raises #UD on CLFLUSH, which Linux's intel-iommu driver executes
 * while it builds tables, so the unit needs v86's module patched (wasm-patch.ts) and instantiated
 * through our `wasm_fn`, which also hooks the guest's clocks for deterministic runs. A user writes
 *
 *   new V86({ ...their options, wasm_fn: vtdWasm(await compilePatchedV86(bytesOfV86Wasm)) })
 *
 * and `attachVtd` later finds what `vtdWasm` set up for that emulator through its wasm memory.
 * No node: imports (usable from a page: fetch v86.wasm and pass its bytes).
 */
import { ClflushHook } from "./clflush.ts";
import { deterministicImports } from "./deterministic-time.ts";
import { resolveDeterministic, VirtualClock, type DeterministicOptions } from "./virtual-clock.ts";
import { patchV86Wasm } from "./wasm-patch.ts";

export interface VtdWasmOptions {
  /** Guest time follows guest instructions (see MachineOptions.deterministic). Default false. */
  deterministic?: boolean | DeterministicOptions;
}

/** What `vtdWasm` made for one emulator: found again by attachVtd through the wasm memory. */
export interface WasmHooks {
  clflush: ClflushHook;
  clock: VirtualClock | undefined;
}

/** v86's `wasm_fn` option: called once with v86's imports, returns the instance's exports. */
export type V86WasmFn = (imports: WebAssembly.Imports) => Promise<WebAssembly.Exports>;

const hooksByMemory = new WeakMap<WebAssembly.Memory, WasmHooks>();

/** The patched v86 module from the bytes of v86.wasm (a clear error if they are not v86 0.5.462's). */
export function compilePatchedV86(v86Wasm: Uint8Array | ArrayBuffer): Promise<WebAssembly.Module> {
  const bytes = v86Wasm instanceof Uint8Array ? v86Wasm : new Uint8Array(v86Wasm);
  return WebAssembly.compile(patchV86Wasm(bytes));
}

/**
 * v86's `wasm_fn` for an emulator the unit will be attached to: instantiates the patched module
 * (compilePatchedV86, or patchedV86Module in Node) with the CLFLUSH hook and, with
 * `deterministic`, the clocks of a deterministic machine. One call per emulator.
 */
export function vtdWasm(module: WebAssembly.Module, options: VtdWasmOptions = {}): V86WasmFn {
  if (!(module instanceof WebAssembly.Module)) throw new TypeError("vtdWasm: expected the patched v86 module (a WebAssembly.Module from compilePatchedV86)");
  const resolved = resolveDeterministic(options.deterministic);
  const clock = resolved ? new VirtualClock(resolved) : undefined;
  const clflush = new ClflushHook();
  const instantiate = clflush.wasmFn(module);
  let used = false;
  return async (imports) => {
    if (used) throw new Error("vtdWasm: this wasm_fn was already used by another emulator (call vtdWasm once per emulator)");
    used = true;
    const exports = await instantiate(clock ? deterministicImports(imports, clock) : imports);
    const memory = exports.memory;
    if (memory instanceof WebAssembly.Memory) hooksByMemory.set(memory, { clflush, clock });
    return exports;
  };
}

/** What vtdWasm set up for the emulator whose wasm memory this is, or undefined if it was not used. */
export function wasmHooksOf(memory: WebAssembly.Memory): WasmHooks | undefined {
  return hooksByMemory.get(memory);
}
