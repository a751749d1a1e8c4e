import { describe, expect, it } from "vitest";
import { LiveBytes } from "./wasm-views.ts";

describe("LiveBytes", () => {
  it("keeps one view while the memory does not grow, and a new one over the same bytes after it grew", () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    const live = new LiveBytes(memory, 16, 64);
    const first = live.bytes;
    first[0] = 0xab;
    expect(live.bytes).toBe(first); // no new view per access
    memory.grow(1);
    expect(first.length).toBe(0); // the old buffer is detached
    const after = live.bytes;
    expect(after === first).toBe(false);
    expect(after.buffer).toBe(memory.buffer);
    expect([after.byteOffset, after.length, after[0]]).toEqual([16, 64, 0xab]);
    expect(live.bytes).toBe(after);
  });
});
