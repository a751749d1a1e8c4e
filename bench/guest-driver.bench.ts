/**
 * Guest-driver figures on the in-process machine (ECAP.C = 0, as QEMU):
 * - map+unmap of 4 KiB buffers per second: strict, lazy (flush queue), CM = 1 strict, CM = 1
 *   batched (flush queue of page-selective invalidations), each against strict;
 * - 1 GiB mapped as 262,144 4 KiB pages: one range operation versus page by page with an
 *   invalidation and wait each (the Xen hvmloader case), under CM = 1 where every map needs one;
 * - invalidations the unit saw per mapped MiB, per mode;
 * - map+unmap on the v86 platform (memory through v86's CPU entry points, every register access
 *   through v86's memory map, v86 running the idle guest between measurements) against in-process.
 */
import type { BenchReporter } from "./harness.ts";
import type { DriverCreateOptions } from "../src/guest-driver/driver.ts";
import { SID_A, testMachine } from "../test/support/driver-scenarios.ts";
import { v86TestMachine } from "../test/support/v86-driver-machine.ts";
import type { DeviceStats } from "../src/vtd-device/stats.ts";

const PHYS = 0x40_0000;
const GiB = 2 ** 30;
const PAGE = 4096;

function machine(cachingMode: boolean, options: DriverCreateOptions = {}) {
  const m = testMachine({ cachingMode, coherent: false }, options);
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  return { ...m, d };
}

/** Every invalidation the unit performed (context, IOTLB, device-TLB). */
function invalidations(s: DeviceStats): number {
  const c = s.contextInvalidations, i = s.iotlbInvalidations;
  return c.global + c.domain + c.device + i.global + i.domain + i.page + s.deviceIotlbInvalidations;
}

function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export default async function run(r: BenchReporter): Promise<void> {
  // ---- map + unmap of 4 KiB buffers ----
  r.section("map + unmap of one 4 KiB buffer (dma_map/dma_unmap), ECAP.C = 0");
  const modes: [string, boolean, DriverCreateOptions][] = [
    ["strict", false, { mode: "strict" }],
    ["lazy (flush queue, DSI)", false, { mode: "lazy" }],
    ["CM=1 strict", true, { mode: "strict" }],
    ["CM=1 batched (flush queue of PSIs)", true, { mode: "lazy" }],
  ];
  const perSecond: Record<string, number> = {};
  for (const [name, cm, options] of modes) {
    const m = machine(cm, options);
    const result = r.measure((n) => {
      for (let i = 0; i < n; i++) {
        const iova = m.driver.mapBuffer(m.d, PHYS + (i % 64) * PAGE, PAGE, "rw");
        m.driver.unmapBuffer(m.d, iova, PAGE);
      }
      m.driver.flush();
    }, 20_000);
    perSecond[name] = result.opsPerSecond;
  }
  const strict = perSecond["strict"]!;
  for (const [name] of modes) {
    r.figure(`map+unmap per second, ${name}`, perSecond[name]!, "ops/s", name === "strict" ? {} : { baseline: strict, baselineName: "strict" });
  }
  r.figure("CM=1 batched against CM=1 strict", perSecond["CM=1 batched (flush queue of PSIs)"]! / perSecond["CM=1 strict"]!, "x");

  // ---- 1 GiB as 4 KiB pages: range versus page by page (CM = 1) ----
  r.section("1 GiB mapped as 262,144 4 KiB pages, CM = 1 (each map needs an invalidation)");
  const pages = GiB / PAGE;
  {
    const m = machine(true);
    const before = invalidations(m.platform.device.stats);
    const t0 = now();
    m.driver.map(m.d, GiB, GiB, GiB, "rw", { largestPage: "4K" });
    const rangeMs = now() - t0;
    const rangeInvalidations = invalidations(m.platform.device.stats) - before;
    const t1 = now();
    m.driver.unmap(m.d, GiB, GiB);
    const rangeUnmapMs = now() - t1;

    const byPage = machine(true);
    const beforePages = invalidations(byPage.platform.device.stats);
    const t2 = now();
    for (let i = 0; i < pages; i++) byPage.driver.map(byPage.d, GiB + i * PAGE, GiB + i * PAGE, PAGE, "rw");
    const pageMs = now() - t2;
    const pageInvalidations = invalidations(byPage.platform.device.stats) - beforePages;

    const scoped = machine(true);
    const beforeScoped = invalidations(scoped.platform.device.stats);
    const t3 = now();
    scoped.driver.deferFlush(() => {
      for (let i = 0; i < pages; i++) scoped.driver.map(scoped.d, GiB + i * PAGE, GiB + i * PAGE, PAGE, "rw");
    });
    const scopedMs = now() - t3;
    const scopedInvalidations = invalidations(scoped.platform.device.stats) - beforeScoped;

    r.figure("map 1 GiB as one range (4 KiB pages)", rangeMs, "ms host", { target: "< 1000 ms, ≤ 1 invalidation", met: rangeMs < 1000 && rangeInvalidations <= 1 });
    r.figure("  invalidations the unit saw (range)", rangeInvalidations, "");
    r.figure("unmap 1 GiB as one range", rangeUnmapMs, "ms host");
    r.figure("map 1 GiB page by page, an invalidation + wait each", pageMs, "ms host", { baseline: rangeMs, baselineName: "one range" });
    r.figure("  invalidations the unit saw (page by page)", pageInvalidations, "");
    r.figure("map 1 GiB page by page in one deferred-flush scope", scopedMs, "ms host", { baseline: rangeMs, baselineName: "one range" });
    r.figure("  invalidations the unit saw (deferred scope)", scopedInvalidations, "");
  }

  // ---- invalidations per mapped MiB ----
  r.section("invalidations the unit saw per mapped MiB (1024 x 4 KiB buffers mapped and unmapped)");
  for (const [name, cm, options] of modes) {
    const m = machine(cm, options);
    const before = invalidations(m.platform.device.stats);
    const waitsBefore = m.platform.device.stats.invalidationWaits;
    for (let i = 0; i < 1024; i++) {
      const iova = m.driver.mapBuffer(m.d, PHYS + (i % 64) * PAGE, PAGE, "rw");
      m.driver.unmapBuffer(m.d, iova, PAGE);
    }
    m.driver.flush();
    r.figure(`invalidations per MiB, ${name}`, (invalidations(m.platform.device.stats) - before) / 4, "per MiB");
    r.figure(`  waits per MiB, ${name}`, (m.platform.device.stats.invalidationWaits - waitsBefore) / 4, "per MiB");
  }
  for (const cm of [false, true]) {
    const m = machine(cm);
    const before = invalidations(m.platform.device.stats);
    for (let i = 0; i < 16; i++) {
      m.driver.map(m.d, GiB + i * 2 ** 20, PHYS, 2 ** 20, "rw", { largestPage: "4K" });
      m.driver.unmap(m.d, GiB + i * 2 ** 20, 2 ** 20);
    }
    r.figure(`invalidations per MiB, 1 MiB ranges, ${cm ? "CM=1" : "CM=0"} strict`, (invalidations(m.platform.device.stats) - before) / 16, "per MiB");
  }

  // ---- the same driver on the v86 platform ----
  r.section("map + unmap of one 4 KiB buffer on the v86 platform (ECAP.C = 0), against the in-process machine above");
  for (const [name, cm] of [["strict", false], ["CM=1 strict", true]] as const) {
    const v = await v86TestMachine({ cachingMode: cm, coherent: false }, { mode: "strict" });
    try {
      const d = v.driver.createDomain();
      v.driver.attach(SID_A, d);
      const accessesBefore = v.platform.mmioAccesses;
      let ops = 0;
      const result = r.measure((n) => {
        for (let i = 0; i < n; i++) {
          const iova = v.driver.mapBuffer(d, PHYS + (i % 64) * PAGE, PAGE, "rw");
          v.driver.unmapBuffer(d, iova, PAGE);
        }
        ops += n;
      }, 20_000);
      r.figure(`map+unmap per second on v86, ${name}`, result.opsPerSecond, "ops/s", { baseline: perSecond[name]!, baselineName: "in-process" });
      r.figure(`  register accesses through v86's memory map per map+unmap, ${name}`, (v.platform.mmioAccesses - accessesBefore) / ops, "");
    } finally {
      await v.close();
    }
  }
}
