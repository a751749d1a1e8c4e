/**
 * The VFIO-like consumer with the guest driver on the in-process machine: a device assigned to
 * the guest does DMA only through the host IOMMU shadow the notifiers feed.
 * - CM = 1: through a long seeded random workload the assigned device succeeds exactly where the
 *   guest mapped (with the right data and permissions) and faults elsewhere, and after every
 *   completed invalidation the shadow equals an independent walk of the guest's tables.
 * - CM = 0: registration refused; forced with the unsafe option, a fresh mapping the guest never
 *   invalidated is missing from the shadow and the assigned device faults on it.
 * - The host map/unmap calls the same workload costs under strict, lazy and batched unmapping.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Gsts, Reg } from "../spec/registers.ts";
import { VtdDriver, type DriverCreateOptions } from "../guest-driver/driver.ts";
import { InProcessPlatform } from "../guest-driver/in-process-platform.ts";
import { SID_A, SID_B, testMachine, type TestMachine } from "../../test/support/driver-scenarios.ts";
import { NotifierError, NotifierFlag } from "../vtd-device/notifiers/notifier-types.ts";
import { FaultReason } from "../spec/fault-reasons.ts";
import { referenceMappings, type ReferenceMapping } from "../../test/support/reference-mappings.ts";
import { DATA_END, DATA_START, RandomWorkload, type Interval } from "../../test/support/vfio-workload.ts";
import { assignDevice, type VfioAssignment } from "./vfio.ts";
import { HostIommu, HostIommuError } from "./host-iommu.ts";

const RAM = 64 << 20;

function reference(m: TestMachine, sid: number): ReferenceMapping[] {
  const unit = m.platform.device;
  return referenceMappings(m.platform.ram, {
    rootTable: Number(unit.readRegister(Reg.RTADDR, 8) & ~0xfffn),
    translationEnabled: (Number(unit.readRegister(Reg.GSTS, 4)) & Number(Gsts.TES)) !== 0,
    sid,
    awBits: unit.options.awBits,
  });
}

function shadowDiff(m: TestMachine, vfio: VfioAssignment): string | undefined {
  const tables = reference(m, vfio.sid), host = vfio.hostIommu.mappings();
  if (tables.length === host.length && tables.every((t, i) => {
    const h = host[i]!;
    return t.iova === h.iova && t.size === h.size && t.output === h.hostAddress && t.permission === h.permission;
  })) return undefined;
  const want = tables.map((r) => `${r.iova.toString(16)}+${r.size.toString(16)}->${r.output.toString(16)}/${r.permission}`);
  const got = host.map((h) => `${h.iova.toString(16)}+${h.size.toString(16)}->${h.hostAddress.toString(16)}/${h.permission}`);
  const missing = want.filter((w) => !got.includes(w)).slice(0, 3);
  const extra = got.filter((g) => !want.includes(g)).slice(0, 3);
  return `shadow differs from the tables: missing ${missing.join(" ")}; extra ${extra.join(" ")}`;
}

/** Fills the data RAM with a pattern, so a read shows where it landed. */
function fillData(m: TestMachine): void {
  for (let a = DATA_START; a < DATA_END; a += 4) m.platform.ram.write32(a, (a * 2654435761) >>> 0);
}

interface Run {
  m: TestMachine;
  vfio: VfioAssignment;
  workload: RandomWorkload;
  problems: string[];
  checks: number;
  dmaChecks: number;
  /** Sizes of the MAP events seen. */
  sizes: Set<number>;
}

/**
 * Runs `steps` steps of the seeded workload with an assigned device at SID_A. After every
 * completed invalidation (each wait) the shadow is compared with the tables, whenever no unmap
 * is still waiting in the flush queue; after every step the assigned device probes the mappings.
 */
function run(mode: "strict" | "lazy" | "batched", steps: number, seed: number): Run {
  const driverOptions: DriverCreateOptions = mode === "strict" ? { mode: "strict" }
    : { mode: "lazy", flushQueueGranularity: mode === "lazy" ? "domain" : "page" };
  const m = testMachine({ cachingMode: true, coherent: false }, driverOptions);
  fillData(m);
  const vfio = assignDevice(m.platform.device, SID_A);
  const sizes = new Set<number>();
  m.platform.device.notifiers.addressSpace(SID_A).register((e) => sizes.add(e.addressMask + 1), { events: NotifierFlag.MAP });
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  const workload = new RandomWorkload(seed, m.driver, d);
  const r: Run = { m, vfio, workload, problems: [], checks: 0, dmaChecks: 0, sizes };
  const problems = r.problems;
  m.platform.device.notifiers.onNotifierError = (report) => problems.push(`notifier error: ${String(report.error)}`);
  const settled = () => m.driver.pendingUnmaps === 0;
  m.platform.device.trace.subscribe((event) => {
    if (event.type !== "vtd_inv_wait" || !settled()) return;
    r.checks++;
    const diff = shadowDiff(m, vfio);
    if (diff && problems.length < 10) problems.push(`after a wait: ${diff}`);
  });
  const buffer = new Uint8Array(4);
  for (let step = 0; step < steps && problems.length === 0; step++) {
    const kind = workload.step();
    const exact = settled();
    for (const iova of workload.probes()) {
      const model: Interval | undefined = workload.lookup(iova);
      const phys = model ? model.phys + (iova - model.start) : -1;
      // Reads: allowed where mapped with R; the data is what RAM holds there.
      const read = vfio.device.dmaRead(iova, buffer);
      r.dmaChecks++;
      if (model && model.permission & 1) {
        const expected = phys + 4 <= RAM ? m.platform.ram.read32(phys) : undefined;
        const got = read.ok ? (buffer[0]! | (buffer[1]! << 8) | (buffer[2]! << 16) | (buffer[3]! << 24)) >>> 0 : undefined;
        if (expected === undefined ? read.ok || read.reason !== 0 : got !== expected) {
          problems.push(`step ${step} (${kind}): read of mapped 0x${iova.toString(16)} gave ${read.ok ? `0x${got?.toString(16)}` : `fault ${read.reason}`}`);
        }
      } else if (exact && (read.ok || read.reason !== FaultReason.ReadNotPermitted)) {
        problems.push(`step ${step} (${kind}): read of ${model ? "write-only" : "unmapped"} 0x${iova.toString(16)} did not fault`);
      }
      // Writes into data RAM: allowed where mapped with W.
      if (model && phys >= DATA_START && phys + 4 <= DATA_END) {
        const value = (iova ^ step) >>> 0;
        const write = vfio.device.dmaWrite(iova, new Uint8Array([value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >>> 24]));
        if (model.permission & 2) {
          if (!write.ok || m.platform.ram.read32(phys) !== value) problems.push(`step ${step} (${kind}): write to mapped 0x${iova.toString(16)} failed`);
        } else if (write.ok || write.reason !== FaultReason.WriteNotPermitted) {
          problems.push(`step ${step} (${kind}): write to read-only 0x${iova.toString(16)} did not fault`);
        }
      }
    }
    if (exact) {
      const diff = shadowDiff(m, vfio);
      if (diff) problems.push(`step ${step} (${kind}): ${diff}`);
    }
  }
  return r;
}

describe("an assigned device behind the shadow, CM = 1", () => {
  it("strict: 600 random steps; DMA succeeds exactly where the guest mapped; the shadow equals the tables after every invalidation", () => {
    const r = run("strict", 600, 0x5eed);
    expect(r.problems).toEqual([]);
    // The workload did what it says.
    expect(r.workload.counts).toMatchObject({ "map 2M": expect.any(Number), "map 1G": expect.any(Number) });
    for (const kind of ["map 4K", "map 2M", "map 1G", "unmap", "split", "remap"] as const) expect(r.workload.counts[kind]).toBeGreaterThan(2);
    expect(r.checks).toBeGreaterThan(600);
    expect(r.dmaChecks).toBeGreaterThan(10_000);
    expect(r.sizes).toEqual(new Set([4096, 2 ** 21, 2 ** 30]));
    // A guest fault never became a host error: nothing was refused by the host IOMMU.
    expect(r.m.platform.device.notifiers.stats.notifierErrors).toBe(0);
    expect(r.vfio.hostIommu.emptyUnmaps).toBe(0);
  });

  for (const mode of ["lazy", "batched"] as const) {
    it(`${mode}: the same guarantees whenever no unmap waits in the flush queue`, () => {
      const r = run(mode, 300, 0x5eed);
      expect(r.problems).toEqual([]);
      expect(r.checks).toBeGreaterThan(20);
    });
  }

  it("a second device in another domain keeps its own shadow", () => {
    const m = testMachine({ cachingMode: true, coherent: false });
    const a = assignDevice(m.platform.device, SID_A), b = assignDevice(m.platform.device, SID_B);
    const da = m.driver.createDomain(), db = m.driver.createDomain();
    m.driver.attach(SID_A, da);
    m.driver.attach(SID_B, db);
    m.driver.map(da, 0x1000, DATA_START, 0x2000, "rw");
    m.driver.map(db, 0x1000, DATA_START + 0x10_0000, 0x1000, "r");
    expect(a.hostIommu.mappings().map((h) => [h.iova, h.hostAddress])).toEqual([[0x1000, DATA_START], [0x2000, DATA_START + 0x1000]]);
    expect(b.hostIommu.mappings().map((h) => [h.iova, h.hostAddress, h.permission])).toEqual([[0x1000, DATA_START + 0x10_0000, 1]]);
    m.driver.detach(SID_A);
    expect(a.hostIommu.count).toBe(0);
    expect(b.hostIommu.count).toBe(1);
    expect(a.device.dmaRead(0x1000, new Uint8Array(4)).ok).toBe(false);
    expect(b.device.dmaRead(0x1000, new Uint8Array(4)).ok).toBe(true);
  });

  it("an assignment with a range mirrors only mappings wholly inside it (a superpage reaching out is left out)", () => {
    const m = testMachine({ cachingMode: true, coherent: false });
    const a = assignDevice(m.platform.device, SID_A, { range: { start: 0, end: 0x10_0000 } });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, 0, DATA_START, 0x20_0000, "rw"); // one 2 MiB page: touches the range, reaches past it
    expect(d.lookup(0x1000)?.level).toBe(2);
    expect(a.events.mapOutsideRange).toBe(1);
    expect(a.hostIommu.count).toBe(0);
    expect(a.device.dmaRead(0x1000, new Uint8Array(4)).ok).toBe(false);
    m.driver.unmap(d, 0, 0x20_0000);
    m.driver.map(d, 0x1000, DATA_START, 0x1000, "rw");
    expect(a.hostIommu.mappings().map((h) => [h.iova, h.size])).toEqual([[0x1000, 0x1000]]);
    expect(a.device.dmaRead(0x1000, new Uint8Array(4)).ok).toBe(true);
  });
});

describe("caching mode is what makes the shadow possible", () => {
  it("CM = 0: assignment is refused, naming the device", () => {
    const m = testMachine({ cachingMode: false });
    expect(() => assignDevice(m.platform.device, SID_A)).toThrow(NotifierError);
    expect(() => assignDevice(m.platform.device, SID_A)).toThrow(/^device 00:04\.0 requires caching mode/);
  });

  it("CM = 0 forced (unsafe): a fresh mapping the guest never invalidated is missing from the shadow; with CM = 1 it is there", () => {
    const outcome = (cachingMode: boolean) => {
      const platform = new InProcessPlatform({
        deviceScopes: [{ bus: 0, dev: 4, fn: 0 }],
        vtd: { cachingMode, allowMapNotifiersWithoutCachingMode: !cachingMode, coherent: true },
      });
      const vfio = assignDevice(platform.device, SID_A);
      const driver = VtdDriver.create(platform).initialise();
      const d = driver.createDomain();
      driver.attach(SID_A, d); // before TE, as Linux does: TE on syncs the context
      driver.enableTranslation();
      platform.ram.write32(DATA_START, 0x1234_5678);
      const iova = driver.mapBuffer(d, DATA_START, 4096, "r");
      const bytes = new Uint8Array(4);
      return {
        invalidations: platform.device.stats.iotlbInvalidations.page,
        emulated: platform.device.dmaRead(SID_A, iova, bytes).ok,
        assigned: vfio.device.dmaRead(iova, bytes),
        shadow: vfio.hostIommu.count,
      };
    };
    const cm0 = outcome(false), cm1 = outcome(true);
    // CM = 0: the guest rightly does not invalidate a new mapping; the emulated unit walks the
    // tables and succeeds, but the shadow never heard of the page: the assigned device faults.
    expect(cm0).toMatchObject({ invalidations: 0, emulated: true, shadow: 0, assigned: { ok: false, reason: FaultReason.ReadNotPermitted } });
    // CM = 1: the guest invalidates the new mapping, the notifier mirrors it, the device works.
    expect(cm1).toMatchObject({ invalidations: 1, emulated: true, shadow: 1, assigned: { ok: true } });
  });
});

describe("the host IOMMU shadow", () => {
  it("refuses what a type1 container refuses, and counts its calls", () => {
    const host = new HostIommu();
    host.map(0x20_0000, 0x20_0000, 0x40_0000, 3);
    expect(() => host.map(0x20_1000, 0x1000, 0, 1)).toThrow(HostIommuError);
    expect(() => host.map(0, 0x40_0000, 0, 1)).toThrow(/already mapped/);
    expect(() => host.unmap(0x20_0000, 0x1000)).toThrow(/cut/);
    expect(() => host.map(0x1000, 0x3000, 0, 1)).toThrow(/power-of-two/);
    expect(() => host.map(0x1000, 0x1000, 0, 0)).toThrow(/permission/);
    host.map(0x1000, 0x1000, 0x5000, 1);
    expect(host.lookup(0x20_0fff)).toMatchObject({ iova: 0x20_0000, hostAddress: 0x40_0000 });
    expect(host.unmap(0, 2 ** 48)).toBe(0x20_1000);
    expect(host.unmap(0, 0x1000)).toBe(0);
    expect({ map: host.mapCalls, unmap: host.unmapCalls, empty: host.emptyUnmaps, count: host.count, bytes: host.bytesMapped })
      .toEqual({ map: 6, unmap: 3, empty: 1, count: 0, bytes: 0 }); // refused calls count too
  });
});

describe("host IOMMU calls for one workload under strict, lazy and batched unmapping (CM = 1)", () => {
  const rows: Record<string, Record<string, number>> = {};
  const runs: Record<string, Run> = {};
  for (const mode of ["strict", "lazy", "batched"] as const) {
    it(mode, () => {
      const r = run(mode, 300, 0xc0ffee);
      expect(r.problems).toEqual([]);
      r.m.driver.flush();
      expect(shadowDiff(r.m, r.vfio)).toBeUndefined();
      runs[mode] = r;
      const unit = r.m.platform.device.stats, n = r.m.platform.device.notifiers.stats;
      rows[mode] = {
        "host map": r.vfio.hostIommu.mapCalls,
        "host unmap": r.vfio.hostIommu.unmapCalls,
        "mappings at end": r.vfio.hostIommu.count,
        PSI: unit.iotlbInvalidations.page,
        DSI: unit.iotlbInvalidations.domain,
        waits: unit.invalidationWaits,
        "entries walked": n.entriesWalked,
      };
    });
  }

  it("relations that must hold", () => {
    const s = rows["strict"]!, l = rows["lazy"]!, b = rows["batched"]!;
    expect(s && l && b).toBeTruthy();
    // One workload, one end state.
    const end = (mode: string) => runs[mode]!.vfio.hostIommu.mappings();
    expect(end("lazy")).toEqual(end("strict"));
    expect(end("batched")).toEqual(end("strict"));
    // Strict tells the host every change as it happens; deferring lets changes to the same
    // range (a split superpage unmapped further before the flush) merge, never multiply.
    for (const row of [l, b]) {
      expect(row["host map"]).toBeLessThanOrEqual(s["host map"]!);
      expect(row["host unmap"]).toBeLessThanOrEqual(s["host unmap"]!);
    }
    // Strict: one host call per event, and the events balance: map - unmap = what is left
    // (context syncs unmap everything in one call, and there were none after the attach).
    expect(s["host map"]! - s["host unmap"]!).toBe(s["mappings at end"]!);
    // Lazy flushes whole domains: fewer invalidations, each one a walk of the whole domain.
    expect(l["DSI"]).toBeGreaterThan(s["DSI"]!);
    expect(l["PSI"]).toBeLessThan(s["PSI"]!);
    expect(l["entries walked"]).toBeGreaterThan(s["entries walked"]!);
    // Batched keeps page-selective invalidations, in fewer submissions.
    expect(b["DSI"]).toBe(s["DSI"]);
    expect(b["waits"]).toBeLessThan(s["waits"]!);
  });

  afterAll(() => {
    const modes = Object.keys(rows);
    if (modes.length === 0) return;
    const columns = Object.keys(rows[modes[0]!]!);
    const widths = [8, ...columns.map((c) => Math.max(c.length, ...modes.map((m) => String(rows[m]![c]).length)))];
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join(" | ");
    console.log(["", line(["mode", ...columns]), widths.map((w) => "-".repeat(w)).join("-|-"),
      ...modes.map((m) => line([m, ...columns.map((c) => String(rows[m]![c]))]))].join("\n"));
  });
});
