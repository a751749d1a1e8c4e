/**
 * One workload under every combination of CM (caching mode), C (coherent page walks), RWBF and
 * strict/lazy unmapping. Prints what each configuration cost, by kind, and asserts the rules:
 * what must be invalidated, flushed or written back under each, and that the device always saw
 * exactly the mappings the driver meant (no unexpected fault, no stale success in strict mode).
 */
import { afterAll, describe, expect, it } from "vitest";
import type { UnmapMode } from "./options.ts";
import { deviceRead, readTag, SID_A, SID_B, tag, testMachine, unflushedTableLines } from "./testing.ts";

interface Config {
  cm: boolean;
  coherent: boolean;
  rwbf: boolean;
  mode: UnmapMode;
}

const PHYS = 0x40_0000, PHYS_2 = 0x80_0000, SUPER = 0x200_0000;
const X = 0x5000_0000;

/** Calls in the workload: attach 2, map 20, unmap 10 (one of them a superpage split), detach 1. */
const MAPS = 20, UNMAPS = 10, ATTACHES = 2, DETACHES = 1;

function runWorkload(cfg: Config) {
  const m = testMachine({ cachingMode: cfg.cm, coherent: cfg.coherent, rwbf: cfg.rwbf }, { mode: cfg.mode });
  const { driver, platform } = m;
  const unexpected: string[] = [];
  for (let i = 0; i < 32; i++) tag(platform, PHYS + i * 4096, 0x100 + i);
  tag(platform, PHYS_2, 0x2222);
  for (let i = 0; i < 512; i++) tag(platform, SUPER + i * 4096, 0x9000 + i);
  const expectRead = (what: string, sid: number, iova: number, want: number | "fault" | "any") => {
    const r = deviceRead(platform, sid, iova);
    const got = r.ok ? readTag(r.bytes) : "fault";
    if (want !== "any" && got !== want) unexpected.push(`${what}: got ${got}, expected ${want}`);
  };
  const strict = cfg.mode === "strict";

  const d1 = driver.createDomain(), d2 = driver.createDomain();
  driver.attach(SID_B, d2);
  expectRead("before attach", SID_A, X, "fault"); // CM = 1: a negative context entry
  driver.attach(SID_A, d1);
  expectRead("attached, unmapped", SID_A, X, "fault"); // CM = 1: a negative IOTLB entry
  const buffers = Array.from({ length: 16 }, (_, i) => driver.mapBuffer(d1, PHYS + i * 4096, 4096, "rw"));
  buffers.forEach((iova, i) => expectRead(`buffer ${i}`, SID_A, iova, 0x100 + i));
  driver.map(d2, 0x4000_0000, SUPER, 2 ** 21, "r");
  driver.map(d2, 0x1000_0000, PHYS + 16 * 4096, 16 * 4096, "r");
  expectRead("superpage", SID_B, 0x4000_0000 + 77 * 4096, 0x9000 + 77);
  expectRead("64K range", SID_B, 0x1000_f000, 0x100 + 31);
  driver.map(d1, X, PHYS, 4096, "r");
  expectRead("X mapped after a fault there", SID_A, X, 0x100);
  for (let i = 0; i < 8; i++) driver.unmapBuffer(d1, buffers[i]!, 4096);
  for (let i = 0; i < 8; i++) expectRead(`unmapped buffer ${i}`, SID_A, buffers[i]!, strict ? "fault" : "any");
  driver.unmap(d1, X, 4096);
  driver.map(d1, X, PHYS_2, 4096, "r");
  expectRead("X remapped", SID_A, X, 0x2222);
  driver.unmap(d2, 0x4000_0000 + 5 * 4096, 4096);
  expectRead("split neighbour", SID_B, 0x4000_0000 + 6 * 4096, 0x9000 + 6);
  expectRead("split page", SID_B, 0x4000_0000 + 5 * 4096, strict ? "fault" : "any");
  driver.flush();
  for (let i = 0; i < 8; i++) expectRead(`unmapped buffer ${i} after flush`, SID_A, buffers[i]!, "fault");
  expectRead("split page after flush", SID_B, 0x4000_0000 + 5 * 4096, "fault");
  driver.detach(SID_B);
  expectRead("detached", SID_B, 0x1000_0000, "fault");
  driver.handleFaults();

  const unit = platform.device.stats;
  return {
    unexpected,
    unflushed: unflushedTableLines(m).length,
    driver: driver.counters,
    unit: {
      contextDevice: unit.contextInvalidations.device,
      iotlbGlobal: unit.iotlbInvalidations.global,
      iotlbDomain: unit.iotlbInvalidations.domain,
      iotlbPage: unit.iotlbInvalidations.page,
      waits: unit.invalidationWaits,
      wbf: unit.writeBufferFlushes,
      faults: unit.faultsRecorded + unit.faultsDropped,
    },
  };
}

const configs: Config[] = [];
for (const mode of ["strict", "lazy"] as const)
  for (const cm of [false, true]) for (const coherent of [true, false]) for (const rwbf of [false, true]) configs.push({ cm, coherent, rwbf, mode });

const rows: string[][] = [];
const header = ["mode", "CM", "C", "RWBF", "reg R", "reg W", "cc dev", "iotlb glob", "iotlb dom", "iotlb page", "waits", "descr", "submits", "WBF", "clflush", "spun ms", "DMA faults"];

describe("the same workload under every configuration", () => {
  for (const cfg of configs) {
    const name = `${cfg.mode} CM=${+cfg.cm} C=${+cfg.coherent} RWBF=${+cfg.rwbf}`;
    it(name, () => {
      const r = runWorkload(cfg);
      rows.push([cfg.mode, `${+cfg.cm}`, `${+cfg.coherent}`, `${+cfg.rwbf}`, ...[
        r.driver.registerReads, r.driver.registerWrites, r.unit.contextDevice, r.unit.iotlbGlobal, r.unit.iotlbDomain, r.unit.iotlbPage,
        r.unit.waits, r.driver.descriptorsSubmitted, r.driver.queueSubmissions, r.unit.wbf, r.driver.cacheLinesFlushed, r.driver.spunMs, r.unit.faults,
      ].map(String)]);
      // The device saw exactly what the driver meant.
      expect(r.unexpected).toEqual([]);
      // ECAP.C: flush every table store when 0, never when 1.
      expect(r.unflushed).toBe(0);
      if (cfg.coherent) expect(r.driver.cacheLinesFlushed).toBe(0);
      else expect(r.driver.cacheLinesFlushed).toBeGreaterThan(0);
      // RWBF: a write-buffer flush after each update no invalidation follows (CM = 0), plus one before TE.
      expect(r.unit.wbf).toBe(cfg.rwbf ? (cfg.cm ? 1 : 1 + ATTACHES + MAPS) : 0);
      expect(r.unit.iotlbGlobal).toBe(1); // at initialisation (no ESRTPS)
      if (cfg.cm) {
        // CM = 1: context invalidation per attach (DID 0) and per detach; a PSI per map and per unmap, batched or not.
        expect(r.unit.contextDevice).toBe(ATTACHES + DETACHES);
        expect(r.unit.iotlbDomain).toBe(ATTACHES + DETACHES);
        expect(r.unit.iotlbPage).toBe(MAPS + UNMAPS);
      } else {
        expect(r.unit.contextDevice).toBe(DETACHES);
        if (cfg.mode === "strict") {
          expect(r.unit.iotlbPage).toBe(UNMAPS);
          expect(r.unit.iotlbDomain).toBe(DETACHES);
        } else {
          expect(r.unit.iotlbPage).toBe(0); // the flush queue flushes whole domains (Linux)
          expect(r.unit.iotlbDomain).toBe(DETACHES + 2);
        }
      }
      expect(r.driver.spunMs).toBe(0);
    });
  }

  afterAll(() => {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join(" | ");
    console.log(["", line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)].join("\n"));
  });
});
