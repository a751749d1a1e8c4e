/**
 * The guest driver's main scenarios on v86: the same driver code as the in-process tests, on the
 * V86DriverPlatform (memory through v86's CPU entry points, the unit's registers through v86's
 * memory map, interrupts through the v86 platform's MSI path, the unit's time as v86 advances it),
 * with v86 running the idle guest throughout. Every test checks it really ran there: each register
 * access the unit saw was dispatched by v86's memory map, the guest executed meanwhile, and took
 * no interrupt it was not meant to.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Reg } from "../src/spec/registers.ts";
import { DeviceScopeType } from "../src/spec/dmar.ts";
import { IOAPIC_SOURCE_ID } from "../src/spec/platform.ts";
import type { DriverCreateOptions } from "../src/guest-driver/driver.ts";
import type { DriverRule, FaultRecord } from "../src/guest-driver/options.ts";
import {
  cmContextScenario, cmMapScenario, expectWorkloadRules, formatTable, readTag, runWorkload, SID_A, SID_B, tag, testMachine, WORKLOAD_TABLE_HEADER,
  workloadConfigs, workloadName, workloadRow, workloadUnit,
} from "./support/driver-scenarios.ts";
import { DEFAULT_ALLOCATOR_BASE, V86DriverPlatform } from "../src/v86/driver-platform.ts";
import { eduDma, enableEdu, v86TestMachine, type V86MachineOptions, type V86TestMachine } from "./support/v86-driver-machine.ts";
import { VTD_UNIT_BASE } from "../src/v86/unit-mmio.ts";
import { parseDmar } from "../src/guest-driver/discovery.ts";
import type { TraceEvent } from "../src/vtd-device/trace.ts";
import type { VtdOptions } from "../src/vtd-device/options.ts";

const V86_TEST_TIMEOUT = 60_000;
/** edu's default DMA mask (QEMU's): bus addresses below 256 MiB. */
const EDU_DMA_MASK = 2 ** 28 - 1;
const PHYS = 0x40_0000;

interface Run extends V86TestMachine {
  /** What the unit's trace showed from before the driver started: register accesses, and the writes in order. */
  seen: { accesses: number; writes: { offset: number; size: number }[] };
  start: { instructions: number; heartbeat: number };
}

const open: Run[] = [];

afterEach(async () => {
  for (const run of open.splice(0)) await run.close();
});

async function onV86(vtd: Omit<VtdOptions, "memory" | "onInterrupt"> = {}, driverOptions: DriverCreateOptions = {}, options: V86MachineOptions = {}): Promise<Run> {
  const seen: Run["seen"] = { accesses: 0, writes: [] };
  const m = await v86TestMachine(vtd, driverOptions, {
    ...options,
    beforeDriver: (platform) => {
      platform.device.trace.subscribe((event: TraceEvent) => {
        if (event.type === "vtd_reg_read" || event.type === "vtd_reg_ignored") seen.accesses++;
        if (event.type === "vtd_reg_write") {
          seen.accesses++;
          seen.writes.push({ offset: event.offset, size: event.size });
        }
      });
    },
  });
  const run: Run = { ...m, seen, start: { instructions: m.platform.instructions, heartbeat: m.idle.heartbeat } };
  open.push(run);
  return run;
}

/** It ran on v86: every register access the unit saw came through v86's memory map, and the guest executed meanwhile. */
async function expectRanOnV86(run: Run): Promise<void> {
  expect(run.seen.accesses).toBeGreaterThan(0);
  expect(run.unitDispatch.reads + run.unitDispatch.writes).toBe(run.seen.accesses);
  await run.platform.nextSafePoint();
  expect(run.platform.instructions).toBeGreaterThan(run.start.instructions);
  expect(run.idle.heartbeat).not.toBe(run.start.heartbeat);
  expect(run.idle.interruptsTaken).toBe(0);
  expect(run.platform.handlerErrors).toEqual([]);
}

describe("the workload matrix on v86", () => {
  const rows: string[][] = [];

  for (const cfg of workloadConfigs()) {
    it(workloadName(cfg), async () => {
      const run = await onV86(workloadUnit(cfg), { mode: cfg.mode });
      const r = runWorkload(run, cfg.mode);
      rows.push(workloadRow(cfg, r));
      expectWorkloadRules(expect, cfg, r);
      // The same driver on the in-process machine did exactly the same, count for count.
      const inProcess = runWorkload(testMachine(workloadUnit(cfg), { mode: cfg.mode }), cfg.mode);
      expect(workloadRow(cfg, r)).toEqual(workloadRow(cfg, inProcess));
      // The workload's DMA faults raised the fault event: it reached the driver through v86's MSI path.
      expect(r.unit.faults).toBeGreaterThan(0);
      await run.platform.until(() => run.platform.interruptsDelivered.fault > 0, "the fault interrupt");
      await expectRanOnV86(run);
    }, V86_TEST_TIMEOUT);
  }

  afterAll(() => {
    console.log(`on v86:${formatTable(WORKLOAD_TABLE_HEADER, rows)}`);
  });
});

describe("CM = 1 on v86: one invalidation suppressed faults, the correct driver does not", () => {
  const machine = async (suppress: DriverRule[]) => onV86({ cachingMode: true }, { testOnly: { suppress } });

  it("context entry not-present -> present: kept, the device works", async () => {
    const run = await machine([]);
    expect(cmContextScenario(expect, run)).toBe(0x1111);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("context entry not-present -> present: broken, a stale fault", async () => {
    const run = await machine(["cm-context-invalidation"]);
    expect(cmContextScenario(expect, run)).toBe("fault ContextEntryNotPresent");
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("a page-selective invalidation after every map: kept, the device reads the new mapping", async () => {
    const run = await machine([]);
    expect(cmMapScenario(expect, run)).toEqual({ seen: 0x1111, psi: 1 });
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("a page-selective invalidation after every map: broken, the negative IOTLB entry answers", async () => {
    const run = await machine(["cm-map-invalidation"]);
    expect(cmMapScenario(expect, run)).toEqual({ seen: "fault ReadNotPermitted", psi: 0 });
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);
});

describe("strict versus lazy on v86, with edu's DMA (00:04.0) through the unit", () => {
  const eduMachine = async (driverOptions: DriverCreateOptions) => {
    const faults: FaultRecord[] = [];
    const run = await onV86({}, { ...driverOptions, onFault: (f) => faults.push(f) });
    enableEdu(run.platform);
    const d = run.driver.createDomain();
    run.driver.attach(SID_A, d);
    tag(run.platform, PHYS, 0xabcd);
    const iova = run.driver.mapBuffer(d, PHYS, 4096, "r", { dmaMask: EDU_DMA_MASK });
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(true);
    expect(readTag(run.platform.v86.edu.buffer)).toBe(0xabcd);
    return { run, d, iova, faults };
  };

  it("strict: edu's DMA faults as soon as unmap returns; the fault reaches the driver by interrupt", async () => {
    const { run, d, iova, faults } = await eduMachine({ mode: "strict" });
    run.driver.unmapBuffer(d, iova, 4096);
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(false);
    await run.platform.until(() => faults.length > 0, "the fault report");
    expect(faults[0]).toMatchObject({ sid: SID_A, address: BigInt(iova), write: false });
    expect(run.platform.interruptsDelivered.fault).toBeGreaterThan(0);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("lazy: edu still reaches the buffer after unmap, until the flush queue's 10 ms timer flushes; then it faults", async () => {
    const { run, d, iova } = await eduMachine({ mode: "lazy" });
    const unmappedAt = run.platform.clock.now();
    run.driver.unmapBuffer(d, iova, 4096);
    expect(run.driver.pendingUnmaps).toBe(1);
    tag(run.platform, PHYS, 0x5a1e); // new data in the unmapped buffer
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(true); // the window lazy mode accepts
    expect(readTag(run.platform.v86.edu.buffer)).toBe(0x5a1e);
    await run.platform.until(() => run.driver.pendingUnmaps === 0 && run.platform.interruptsDelivered.completion > 0, "the flush");
    expect(run.platform.clock.now() - unmappedAt).toBeGreaterThanOrEqual(10);
    expect(run.driver.counters.asyncWaits).toBe(1); // the timer's flush waited by interrupt
    expect(run.driver.counters.spunMs).toBe(0);
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(false);
    expect(run.driver.backgroundErrors).toEqual([]);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);
});

describe("asynchronous waits on v86: the completion interrupt comes through v86's path", () => {
  const LATENCY_MS = 200;

  const atsMachine = async () => {
    const run = await onV86({ deviceIotlb: true, deviceIotlbLatencyMs: LATENCY_MS });
    enableEdu(run.platform);
    const d = run.driver.createDomain();
    run.driver.attach(SID_A, d, { deviceTlb: true });
    const iova = run.driver.mapBuffer(d, PHYS, 4096, "rw", { dmaMask: EDU_DMA_MASK });
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(true);
    expect(run.platform.device.deviceTlbs.entries(SID_A)).toBe(1); // edu caches the translation (ATS)
    return { run, d, iova };
  };

  it(`unmapAsync with a ${LATENCY_MS} ms device-TLB invalidation: resolves by interrupt while the guest runs, no spinning`, async () => {
    const { run, d, iova } = await atsMachine();
    const startUnit = run.platform.clock.now();
    const startHeartbeat = run.idle.heartbeat;
    const state = { settled: false };
    const done = run.driver.unmapAsync(d, iova, 4096).then(() => {
      state.settled = true;
    });
    await run.platform.nextSafePoint();
    expect(state.settled).toBe(false);
    // Meanwhile other work: another domain mapped for edu's neighbour, and its DMA.
    const other = run.driver.createDomain();
    run.driver.attach(SID_B, other);
    run.driver.map(other, 0x1000_0000, PHYS, 4096, "r");
    expect(run.platform.device.dmaRead(SID_B, 0x1000_0000, new Uint8Array(4)).ok).toBe(true);
    await run.platform.settle(done, 10_000);
    expect(run.platform.clock.now() - startUnit).toBeGreaterThanOrEqual(LATENCY_MS);
    expect(run.idle.heartbeat).not.toBe(startHeartbeat); // the guest ran during the wait
    expect(run.driver.counters.spunMs).toBe(0);
    expect(run.driver.counters.asyncWaits).toBe(1);
    expect(run.platform.interruptsDelivered.completion).toBeGreaterThanOrEqual(1);
    expect(run.platform.foreignInterrupts).toBe(0);
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(false); // edu's device-TLB entry is gone
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("the same unmap waited for synchronously spins: the unit's clock jumps, the guest executes nothing meanwhile", async () => {
    const { run, d, iova } = await atsMachine();
    const before = { unit: run.platform.clock.now(), heartbeat: run.idle.heartbeat, instructions: run.platform.instructions };
    run.driver.unmap(d, iova, 4096);
    expect(run.platform.clock.now() - before.unit).toBeGreaterThanOrEqual(LATENCY_MS);
    expect(run.driver.counters.spunMs).toBeGreaterThanOrEqual(LATENCY_MS);
    expect(run.idle.heartbeat).toBe(before.heartbeat);
    expect(run.platform.instructions).toBe(before.instructions);
    expect(await eduDma(run.platform, "from-ram", iova, 4)).toBe(false);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);
});

describe("the v86 platform itself", () => {
  it("finds the DMAR the v86 platform put in RAM (RSDP scan), naming the unit and edu", async () => {
    const run = await onV86();
    const dmar = run.platform.acpiTable("DMAR");
    expect(dmar).toEqual(run.platform.v86.dmar);
    const unit = parseDmar(dmar!).units[0]!;
    expect(unit.registerBase).toBe(VTD_UNIT_BASE);
    expect(unit.scopes.map((s) => s.sid)).toEqual([SID_A, SID_B, IOAPIC_SOURCE_ID]);
    expect(unit.scopes.map((s) => s.type)).toEqual([DeviceScopeType.PciEndpoint, DeviceScopeType.PciEndpoint, DeviceScopeType.IoApic]);
    expect(run.platform.acpiTable("XXXX")).toBeUndefined();
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("a 64-bit register write is two 32-bit accesses, low dword first (RTADDR at initialisation)", async () => {
    const run = await onV86();
    const writes = run.seen.writes;
    const i = writes.findIndex((w) => w.offset === Reg.RTADDR);
    expect(writes.slice(i, i + 2)).toEqual([{ offset: Reg.RTADDR, size: 4 }, { offset: Reg.RTADDR + 4, size: 4 }]);
    expect(writes.every((w) => w.size === 4)).toBe(true);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("memory: one 64-bit store lands in RAM; CLFLUSH lines reach the machine's listener and clear the unflushed record", async () => {
    const run = await onV86({ coherent: false });
    const { memory, cache, ram } = run.platform;
    const page = run.platform.allocator.allocatePages(1);
    expect(page).toBeGreaterThanOrEqual(DEFAULT_ALLOCATOR_BASE);
    memory.write64(page + 8, 0x0123_4567_89ab_cdefn);
    const bytes = new Uint8Array(8);
    ram.read(BigInt(page + 8), bytes);
    expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(0x0123_4567_89ab_cdefn);
    expect(memory.read64(page + 8)).toBe(0x0123_4567_89ab_cdefn);
    expect(cache.dirtyLines()).toContain(page);
    const flushed: number[] = [];
    run.machine.clflush.listener = (address) => flushed.push(address);
    const before = cache.flushes;
    cache.flush(page, 4096);
    expect(cache.flushes - before).toBe(64);
    expect(flushed).toHaveLength(64);
    expect(flushed[0]).toBe(page);
    expect(cache.dirtyLines().filter((line) => line >= page && line < page + 4096)).toEqual([]);
    expect(() => memory.write64(0xa_0000, 0n)).toThrow(/not RAM/);
    await expectRanOnV86(run);
  }, V86_TEST_TIMEOUT);

  it("refuses an allocator range in the first MiB, naming the options", async () => {
    const run = await onV86();
    expect(() => new V86DriverPlatform(run.machine, { allocatorBase: 0x8_0000 })).toThrow(/allocatorBase\/allocatorBytes/);
  }, V86_TEST_TIMEOUT);
});
