/**
 * Helpers for the driver's tests and benchmark: an in-process machine with a started driver,
 * device accesses, and the scenarios both platforms run (in-process here, v86 in
 * test/guest-driver-v86.test.ts): a scenario takes a machine with a started driver, whatever
 * platform it is on, and the caller's `expect`.
 */
import type { ExpectStatic } from "vitest";
import { FaultReason } from "../../src/spec/fault-reasons.ts";
import type { VtdDevice } from "../../src/vtd-device/device.ts";
import type { GuestMemory } from "../../src/vtd-device/memory/guest-memory.ts";
import type { VtdOptions } from "../../src/vtd-device/options.ts";
import type { DriverCounters } from "../../src/guest-driver/counters.ts";
import { VtdDriver, type DriverCreateOptions } from "../../src/guest-driver/driver.ts";
import { InProcessPlatform, type InProcessOptions } from "../../src/guest-driver/in-process-platform.ts";
import type { UnmapMode } from "../../src/guest-driver/options.ts";
import type { CpuCache, Platform } from "../../src/guest-driver/platform.ts";

/** 00:04.0 and 00:05.0: the requester ids the tests' devices use (edu sits at 00:04.0 on v86). */
export const SID_A = 0x20;
export const SID_B = 0x28;

/** What the scenarios use of a platform besides the driver's interface: its unit, its RAM, its cache's record. */
export interface ScenarioPlatform extends Platform {
  readonly device: VtdDevice;
  /** RAM as devices and loaders reach it (not through the CPU or its cache): where test data goes. */
  readonly ram: GuestMemory;
  readonly cache: CpuCache & { readonly flushes: number; dirtyLines(): number[] };
}

export interface TestMachine<P extends ScenarioPlatform = InProcessPlatform> {
  platform: P;
  driver: VtdDriver;
}

export function testMachine(
  vtd: Omit<VtdOptions, "memory" | "onInterrupt"> = {},
  driverOptions: DriverCreateOptions = {},
  platformOptions: Omit<InProcessOptions, "vtd"> = {},
): TestMachine {
  const platform = new InProcessPlatform({ deviceScopes: [{ bus: 0, dev: 4, fn: 0 }, { bus: 0, dev: 5, fn: 0 }], ...platformOptions, vtd });
  const driver = VtdDriver.start(platform, driverOptions);
  return { platform, driver };
}

/** A device reads `length` bytes at `iova`: the bytes, or the fault reason. */
export function deviceRead(platform: { device: VtdDevice }, sid: number, iova: number, length = 4): { ok: true; bytes: Uint8Array } | { ok: false; reason: number } {
  const bytes = new Uint8Array(length);
  const result = platform.device.dmaRead(sid, iova, bytes);
  return result.ok ? { ok: true, bytes } : { ok: false, reason: result.reason };
}

export function deviceWrite(platform: { device: VtdDevice }, sid: number, iova: number, data: Uint8Array): { ok: boolean; reason?: number } {
  const result = platform.device.dmaWrite(sid, iova, data);
  return result.ok ? { ok: true } : { ok: false, reason: result.reason };
}

/** Fills guest RAM at `phys` with a recognisable 32-bit tag (straight into RAM: data, not tables). */
export function tag(platform: { ram: GuestMemory }, phys: number, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  if (!platform.ram.write(BigInt(phys), bytes)) throw new RangeError(`tag: 0x${phys.toString(16)} is not RAM`);
}

export function readTag(bytes: Uint8Array): number {
  return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
}

/** CPU-cache lines of table pages the unit cannot see yet (ECAP.C = 0): empty when the driver kept the rule. */
export function unflushedTableLines(m: TestMachine<ScenarioPlatform>): number[] {
  const pages = new Set(m.driver.tablePages());
  return m.platform.cache.dirtyLines().filter((line) => pages.has(line - (line % 4096)));
}

/** Prints rows under a header as an aligned table. */
export function formatTable(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join(" | ");
  return ["", line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)].join("\n");
}

// ---- the workload matrix: one workload under CM, C, RWBF and strict/lazy ----

export interface WorkloadConfig {
  cm: boolean;
  coherent: boolean;
  rwbf: boolean;
  mode: UnmapMode;
}

export interface WorkloadResult {
  unexpected: string[];
  unflushed: number;
  driver: DriverCounters;
  unit: { contextDevice: number; iotlbGlobal: number; iotlbDomain: number; iotlbPage: number; waits: number; wbf: number; faults: number };
}

const PHYS = 0x40_0000, PHYS_2 = 0x80_0000, SUPER = 0x200_0000;
const X = 0x5000_0000;

/** Calls in the workload: attach 2, map 20, unmap 10 (one of them a superpage split), detach 1. */
const MAPS = 20, UNMAPS = 10, ATTACHES = 2, DETACHES = 1;

/** The unit's options for a configuration (the driver's: `{ mode: cfg.mode }`). */
export function workloadUnit(cfg: WorkloadConfig): Omit<VtdOptions, "memory" | "onInterrupt"> {
  return { cachingMode: cfg.cm, coherent: cfg.coherent, rwbf: cfg.rwbf };
}

/** Every configuration: strict and lazy, CM, C and RWBF off and on. */
export function workloadConfigs(): WorkloadConfig[] {
  const configs: WorkloadConfig[] = [];
  for (const mode of ["strict", "lazy"] as const)
    for (const cm of [false, true]) for (const coherent of [true, false]) for (const rwbf of [false, true]) configs.push({ cm, coherent, rwbf, mode });
  return configs;
}

export function workloadName(cfg: WorkloadConfig): string {
  return `${cfg.mode} CM=${+cfg.cm} C=${+cfg.coherent} RWBF=${+cfg.rwbf}`;
}

/** Runs the workload on a machine started with `workloadUnit(cfg)` and `{ mode }`. */
export function runWorkload(m: TestMachine<ScenarioPlatform>, mode: UnmapMode): WorkloadResult {
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
  const strict = mode === "strict";

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

export const WORKLOAD_TABLE_HEADER = [
  "mode", "CM", "C", "RWBF", "reg R", "reg W", "cc dev", "iotlb glob", "iotlb dom", "iotlb page", "waits", "descr", "submits", "WBF", "clflush", "spun ms", "DMA faults",
] as const;

export function workloadRow(cfg: WorkloadConfig, r: WorkloadResult): string[] {
  return [cfg.mode, `${+cfg.cm}`, `${+cfg.coherent}`, `${+cfg.rwbf}`, ...[
    r.driver.registerReads, r.driver.registerWrites, r.unit.contextDevice, r.unit.iotlbGlobal, r.unit.iotlbDomain, r.unit.iotlbPage,
    r.unit.waits, r.driver.descriptorsSubmitted, r.driver.queueSubmissions, r.unit.wbf, r.driver.cacheLinesFlushed, r.driver.spunMs, r.unit.faults,
  ].map(String)];
}

/** The rules each configuration must show in the workload's counts. */
export function expectWorkloadRules(expect: ExpectStatic, cfg: WorkloadConfig, r: WorkloadResult): void {
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
}

// ---- one rule kept or broken: CM = 1 ----

export const RULE_IOVA = 0x1000_0000;
export const RULE_PHYS_1 = 0x40_0000, RULE_PHYS_2 = 0x50_0000;

export function ruleTags(m: TestMachine<ScenarioPlatform>): void {
  tag(m.platform, RULE_PHYS_1, 0x1111);
  tag(m.platform, RULE_PHYS_2, 0x2222);
}

/** What SID_A reads at `iova`: the tag, or "fault <reason>". */
export function seen(m: TestMachine<ScenarioPlatform>, iova = RULE_IOVA): number | string {
  const r = deviceRead(m.platform, SID_A, iova);
  return r.ok ? readTag(r.bytes) : `fault ${FaultReason[r.reason] ?? r.reason}`;
}

/**
 * CM = 1, a context entry going not-present -> present (machine: cachingMode, the rule kept or
 * suppressed). The device tries DMA before it is attached, so the unit caches "not present"
 * (DID 0); returns what it reads once attached to a domain with a mapping.
 */
export function cmContextScenario(expect: ExpectStatic, m: TestMachine<ScenarioPlatform>): number | string {
  ruleTags(m);
  m.driver.attach(SID_B, m.driver.createDomain()); // bus 0's context table exists
  expect(seen(m)).toBe("fault ContextEntryNotPresent");
  const d = m.driver.createDomain();
  m.driver.map(d, RULE_IOVA, RULE_PHYS_1, 4096, "r");
  m.driver.attach(SID_A, d);
  return seen(m);
}

/**
 * CM = 1, a page-selective invalidation after every map: the device reads an unmapped IOVA (the
 * unit caches a negative entry), then it is mapped. Returns what the device reads and how many
 * page-selective invalidations the map caused.
 */
export function cmMapScenario(expect: ExpectStatic, m: TestMachine<ScenarioPlatform>): { seen: number | string; psi: number } {
  ruleTags(m);
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  expect(seen(m)).toBe("fault ReadNotPermitted"); // not mapped yet: cached as a negative entry
  const page = m.platform.device.stats.iotlbInvalidations.page;
  m.driver.map(d, RULE_IOVA, RULE_PHYS_1, 4096, "r");
  return { seen: seen(m), psi: m.platform.device.stats.iotlbInvalidations.page - page };
}
