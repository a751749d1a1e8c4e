/**
 * Random map / unmap sequences through the driver in scalable mode, both stages, CM 0 and 1,
 * strict and lazy: after every step each page of the window is read (and the writable ones
 * written) by the device, and the outcome must equal the test's own record of what was mapped
 * (kept from the calls, not read back from the driver's tables): DMA sees exactly the mappings.
 */
import { describe, expect, it } from "vitest";
import { deviceRead, deviceWrite, readTag, SID_A, tag } from "../../test/support/driver-scenarios.ts";
import { SCALABLE_DRIVER_CASES, scalableMachine } from "../../test/support/scalable-driver.ts";

const PAGE = 4096;
const WINDOW = 0x20_0000;
const PAGES = 64;
const PHYS = 0x80_0000;

/** A small deterministic generator (xorshift32). */
function random(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}


describe("random sequences", () => {
  it.each(SCALABLE_DRIVER_CASES)("$stage stage, CM = $cm, $mode", async ({ stage, cm, mode }) => {
    const m = scalableMachine({ cachingMode: cm }, { stage, mode });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    for (let i = 0; i < PAGES; i++) tag(m.platform, PHYS + i * PAGE, 0x7700_0000 + i);
    /** IOVA page index in the window -> [physical page index, writable]. */
    const model = new Map<number, [number, boolean]>();
    const buffers: { first: number; pages: number }[] = [];
    const next = random(stage.length * 7 + (cm ? 3 : 0) + mode.length);
    for (let step = 0; step < 40; step++) {
      if (buffers.length > 0 && next(3) === 0) {
        const [b] = buffers.splice(next(buffers.length), 1);
        m.driver.unmap(d, WINDOW + b!.first * PAGE, b!.pages * PAGE);
        for (let i = 0; i < b!.pages; i++) model.delete(b!.first + i);
        if (mode === "lazy") m.driver.flush();
      } else {
        const pages = 1 + next(4), first = next(PAGES - pages);
        let free = true;
        for (let i = 0; i < pages; i++) if (model.has(first + i)) free = false;
        if (!free) continue;
        const phys = next(PAGES - pages), writable = next(2) === 1;
        m.driver.map(d, WINDOW + first * PAGE, PHYS + phys * PAGE, pages * PAGE, writable ? "rw" : "r");
        buffers.push({ first, pages });
        for (let i = 0; i < pages; i++) model.set(first + i, [phys + i, writable]);
      }
      await m.platform.settle(Promise.resolve());
      for (let page = 0; page < PAGES; page++) {
        const expected = model.get(page);
        const r = deviceRead(m.platform, SID_A, WINDOW + page * PAGE);
        expect({ step, page, ok: r.ok, tag: r.ok ? readTag(r.bytes) : undefined })
          .toEqual({ step, page, ok: expected !== undefined, tag: expected ? 0x7700_0000 + expected[0] : undefined });
        if (expected) {
          const bytes = new Uint8Array(4);
          new DataView(bytes.buffer).setUint32(0, 0x7700_0000 + expected[0], true);
          expect(deviceWrite(m.platform, SID_A, WINDOW + page * PAGE, bytes).ok).toBe(expected[1]);
        }
      }
    }
    expect(buffers.length).toBeGreaterThan(0);
  });
});
