import { describe, expect, it } from "vitest";
import { CLFLUSH_HOOK_IMPORT, CLFLUSH_SITE, findFunctionImport, patchClflush } from "./wasm-patch.ts";
import { readV86Wasm } from "./v86-wasm.node.ts";

describe("CLFLUSH patch of v86.wasm", () => {
  const original = readV86Wasm();

  it("finds the hook import: env.jit_clear_func, (i32) -> ()", () => {
    expect(findFunctionImport(original, CLFLUSH_HOOK_IMPORT.module, CLFLUSH_HOOK_IMPORT.name)).toEqual({ index: 18, params: [0x7f], results: [] });
  });

  it("replaces exactly the 6-byte call with local.get 1; call <hook>, and the module stays valid", () => {
    const patched = patchClflush(original);
    const differing: number[] = [];
    for (let i = 0; i < original.length; i++) if (original[i] !== patched[i]) differing.push(i);
    expect(differing[0]).toBeGreaterThanOrEqual(CLFLUSH_SITE.offset);
    expect(differing[differing.length - 1]).toBeLessThan(CLFLUSH_SITE.offset + CLFLUSH_SITE.original.length);
    expect(Array.from(patched.subarray(CLFLUSH_SITE.offset, CLFLUSH_SITE.offset + 6))).toEqual([0x20, 0x01, 0x10, 0x92, 0x80, 0x00]);
    expect(WebAssembly.validate(patched)).toBe(true);
    expect(original[CLFLUSH_SITE.offset]).toBe(0x10); // the input is left alone
  });

  it("refuses an unknown build, naming the bytes it expected", () => {
    const other = original.slice();
    other[CLFLUSH_SITE.offset - 3] ^= 0xff;
    expect(() => patchClflush(other)).toThrow(/expected bytes 28 02 c0 1f 41 01 71 0d 8f 01 10 87 90 80 80 00 0c 65 at file offset 0xe8fbc/);
    expect(() => patchClflush(original.subarray(0, 1000))).toThrow(/not the build this project patches/);
  });

  it("refuses a file that is not WebAssembly when looking for imports", () => {
    expect(() => findFunctionImport(new Uint8Array(64), "env", "x")).toThrow(/not a WebAssembly module/);
  });
});
