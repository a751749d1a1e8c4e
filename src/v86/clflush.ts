/**
 * CLFLUSH as a no-op with a hook. Both of v86's paths end here: the patched interpreter calls the
 * hook import with its frame pointer (see wasm-patch.ts), JIT-compiled code calls the
 * `instr_0FAE_7_mem` import with the address. A no-op is right for v86, whose memory is coherent;
 * the hook is where the unit's non-coherent model (ECAP.C = 0, option `cacheLineFlushes`) learns
 * of the guest's flushes: `physicalListener` gets each flushed line's guest-physical address,
 * found by a side-effect-free walk of the guest's page tables (linear-address.ts).
 * The hook runs in the middle of an instruction: it must not raise interrupts (see safe-point.ts).
 */
import type { V86Cpu } from "./internals.ts";
import { CLFLUSH_FRAME_ADDRESS_OFFSET, CLFLUSH_HOOK_IMPORT, JIT_TABLE_SIZE } from "./wasm-patch.ts";

export type WasmFn = (imports: WebAssembly.Imports) => Promise<WebAssembly.Exports>;

export class ClflushHook {
  /**
   * Observers: called with each flushed line's address: linear for an executed CLFLUSH,
   * guest-physical for the host-side driver's flushes (driver-platform.ts, which has no paging).
   */
  listener: ((address: number) => void) | undefined;
  /** Called with the guest-physical address of each flushed line (not called for an unmapped one). */
  physicalListener: ((address: number) => void) | undefined;
  /** Linear to guest-physical (the CPU's paging); identity until the machine sets it. */
  translate: (linear: number) => number = (linear) => linear;
  count = 0;
  /** How many came through each of v86's paths. */
  interpreted = 0;
  compiled = 0;
  private memory: WebAssembly.Memory | undefined;

  /** v86's `wasm_fn` option: instantiates the patched module, wrapping the hook import. */
  wasmFn(module: WebAssembly.Module): WasmFn {
    return async (imports) => {
      const env = imports[CLFLUSH_HOOK_IMPORT.module] as Record<string, unknown>;
      const original = env[CLFLUSH_HOOK_IMPORT.name] as (index: number) => void;
      if (typeof original !== "function") throw new Error(`v86 did not pass import ${CLFLUSH_HOOK_IMPORT.name}`);
      const wrapped = {
        ...imports,
        [CLFLUSH_HOOK_IMPORT.module]: {
          ...env,
          [CLFLUSH_HOOK_IMPORT.name]: (value: number) => {
            if (value >>> 0 < JIT_TABLE_SIZE) original(value);
            else this.fromInterpreter(value >>> 0);
          },
        },
      };
      const instance = await WebAssembly.instantiate(module, wrapped);
      this.memory = instance.exports.memory as WebAssembly.Memory;
      return instance.exports;
    };
  }

  /** The JIT path: code compiled after this call reports CLFLUSH here instead of raising #UD. */
  installJit(cpu: V86Cpu): void {
    cpu.jit_imports["instr_0FAE_7_mem"] = (address: number) => {
      this.compiled++;
      this.flushed(address >>> 0);
    };
  }

  private fromInterpreter(frame: number): void {
    const memory = this.memory;
    if (!memory) return;
    this.interpreted++;
    this.flushed(new DataView(memory.buffer).getUint32(frame + CLFLUSH_FRAME_ADDRESS_OFFSET, true));
  }

  private flushed(address: number): void {
    this.count++;
    this.listener?.(address);
    if (this.physicalListener) this.physicallyFlushed(this.translate(address));
  }

  /** A line the host flushed for the guest (a host-side driver on guest-physical memory), or the CPU's, translated. */
  physicallyFlushed(address: number): void {
    if (address >= 0) this.physicalListener?.(address);
  }
}
