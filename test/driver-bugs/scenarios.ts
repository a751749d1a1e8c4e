/**
 * The driver-bugs catalogue (docs/driver-bugs.md): one small scenario per invalidation bug that a
 * real driver shipped, each run by the TypeScript guest driver on the in-process machine with the
 * strict checker on, correctly or with that one mistake (a test-only switch of the driver). A
 * scenario returns what the checker reported and what the device saw, so the test can show both
 * the report and the consequence.
 */
import { FaultReason } from "../../src/spec/fault-reasons.ts";
import { Gcmd, GSTS_PERSISTENT_MASK, Reg } from "../../src/spec/registers.ts";
import type { DriverRule } from "../../src/guest-driver/options.ts";
import { VtdDriver } from "../../src/guest-driver/driver.ts";
import type { VtdOptions } from "../../src/vtd-device/options.ts";
import type { CheckerRule } from "../../src/vtd-device/checker/checker-rules.ts";
import { deviceRead, deviceWrite, readTag, SID_A, SID_B, tag, testMachine, type TestMachine } from "../support/driver-scenarios.ts";

export const IOVA = 0x4000_0000;
export const PHYS_A = 0x200_0000;
export const PHYS_B = 0x210_0000;
const TAG_A = 0xaaaa_0001, TAG_B = 0xbbbb_0002;

/** What one run gave: the checker's reports by rule (errors and warnings) and the device's view. */
export interface Outcome {
  errors: CheckerRule[];
  /** What the device got: "tag A", "tag B", "ok", or "fault 0x.." (interrupts: "vector 0x..", "fault 0x.."). */
  device: string[];
  /** Faults the unit recorded, by reason. */
  faults: number[];
}

export interface Scenario {
  id: string;
  /** The test-only rule the buggy driver leaves out. */
  rule: DriverRule;
  /** Unit options besides the checker. */
  vtd: Omit<VtdOptions, "memory" | "onInterrupt">;
  run(m: TestMachine, buggy: boolean): string[];
  /** What the correct driver's device sees, and the buggy one's. */
  correct: string[];
  buggy: string[];
  /** The checker's error report for the buggy run (exactly this one); none for the correct run. */
  report: CheckerRule | undefined;
}

function read(m: TestMachine, iova: number): string {
  const r = deviceRead(m.platform, SID_A, iova);
  if (!r.ok) return `fault 0x${r.reason.toString(16)}`;
  const t = readTag(r.bytes);
  return t === TAG_A ? "tag A" : t === TAG_B ? "tag B" : `0x${t.toString(16)}`;
}

function write(m: TestMachine, iova: number): string {
  const r = deviceWrite(m.platform, SID_A, iova, new Uint8Array(4));
  return r.ok ? "ok" : `fault 0x${r.reason!.toString(16)}`;
}

/** A domain for SID_A with IOVA mapped read-write to PHYS_A (what most scenarios start from). */
function attachedWithPage(m: TestMachine): ReturnType<VtdDriver["createDomain"]> {
  const d = m.driver.createDomain();
  m.driver.attach(SID_A, d);
  m.driver.map(d, IOVA, PHYS_A, 4096, "rw");
  return d;
}

function tags(m: TestMachine): void {
  tag(m.platform, PHYS_A, TAG_A);
  tag(m.platform, PHYS_B, TAG_B);
}

export function runScenario(s: Scenario, buggy: boolean): Outcome {
  const faults: number[] = [];
  const m = testMachine({ checker: true, ...s.vtd }, {
    ...(buggy ? { testOnly: { suppress: [s.rule] } } : {}),
    onFault: (f) => faults.push(f.reason),
  });
  tags(m);
  const device = s.run(m, buggy);
  m.driver.handleFaults();
  const errors = (m.platform.device.checker?.summary() ?? []).filter((e) => e.severity === "error").flatMap((e) => Array<CheckerRule>(e.count).fill(e.rule));
  return { errors, device, faults };
}

/** The previous owner stops its queue and interrupt remapping (as a kexec'd kernel leaves the unit), translation left on. */
function handOver(m: TestMachine): void {
  const device = m.platform.device;
  const persistent = device.mmioRead(Reg.GSTS, 4) & Number(GSTS_PERSISTENT_MASK);
  device.mmioWrite(Reg.GCMD, 4, (persistent & ~Number(Gcmd.IRE)) >>> 0);
  device.mmioWrite(Reg.GCMD, 4, (persistent & ~Number(Gcmd.IRE) & ~Number(Gcmd.QIE)) >>> 0);
}

export const SCENARIOS: Scenario[] = [
  {
    id: "sel4-present-to-not-present",
    rule: "unmap-invalidation",
    vtd: {},
    run(m) {
      const d = attachedWithPage(m);
      const before = read(m, IOVA);
      m.driver.unmap(d, IOVA, 4096);
      return [before, read(m, IOVA)];
    },
    correct: ["tag A", `fault 0x${FaultReason.ReadNotPermitted.toString(16)}`],
    buggy: ["tag A", "tag A"],
    report: "stale-cache",
  },
  {
    id: "sel4-present-to-other",
    rule: "unmap-invalidation",
    vtd: {},
    run(m) {
      const d = attachedWithPage(m);
      const before = read(m, IOVA);
      m.driver.unmap(d, IOVA, 4096);
      m.driver.map(d, IOVA, PHYS_B, 4096, "rw");
      return [before, read(m, IOVA)];
    },
    correct: ["tag A", "tag B"],
    buggy: ["tag A", "tag A"],
    report: "stale-cache",
  },
  {
    id: "asterinas-root-activation-esrtps0",
    rule: "root-table-invalidation",
    vtd: {},
    run(m, buggy) {
      // A previous owner translated SID_A's IOVA to A and left translation on.
      attachedWithPage(m);
      const before = read(m, IOVA);
      handOver(m);
      // The new driver: its own root table, IOVA to B; buggy: no global invalidations after SRTP.
      const next = VtdDriver.create(m.platform, buggy ? { testOnly: { suppress: ["root-table-invalidation"] } } : {}).initialise().enableTranslation();
      const d2 = next.createDomain();
      next.attach(SID_A, d2);
      next.map(d2, IOVA, PHYS_B, 4096, "rw");
      return [before, read(m, IOVA)];
    },
    correct: ["tag A", "tag B"],
    buggy: ["tag A", "tag A"],
    report: "stale-cache",
  },
  {
    id: "qemu-cm-context-present",
    rule: "cm-context-invalidation",
    vtd: { cachingMode: true },
    run(m) {
      const d = m.driver.createDomain();
      m.driver.attach(SID_B, d); // bus 0's root entry is present from here on
      const before = read(m, IOVA); // SID_A not attached yet: the unit caches its not-present context entry (CM = 1)
      m.driver.attach(SID_A, d);
      m.driver.map(d, IOVA, PHYS_A, 4096, "rw");
      return [before, read(m, IOVA)];
    },
    correct: [`fault 0x${FaultReason.ContextEntryNotPresent.toString(16)}`, "tag A"],
    buggy: [`fault 0x${FaultReason.ContextEntryNotPresent.toString(16)}`, `fault 0x${FaultReason.ContextEntryNotPresent.toString(16)}`],
    report: "missing-cm-invalidation",
  },
  {
    id: "c0-unflushed-table-write",
    rule: "cpu-cache-flush",
    vtd: { coherent: false },
    run(m) {
      attachedWithPage(m);
      return [read(m, IOVA)];
    },
    correct: ["tag A"],
    buggy: [`fault 0x${FaultReason.RootEntryNotPresent.toString(16)}`],
    report: "unflushed-table-write",
  },
  {
    id: "rwbf-without-wbf",
    rule: "write-buffer-flush",
    vtd: { rwbf: true },
    run(m) {
      const d = attachedWithPage(m);
      const before = read(m, IOVA); // the unit reads the line holding IOVA's and the next page's PTEs
      m.driver.map(d, IOVA + 4096, PHYS_B, 4096, "rw");
      return [before, read(m, IOVA + 4096)];
    },
    correct: ["tag A", "tag B"],
    buggy: ["tag A", `fault 0x${FaultReason.ReadNotPermitted.toString(16)}`],
    report: "missing-write-buffer-flush",
  },
  {
    id: "permission-change",
    rule: "permission-change-invalidation",
    vtd: {},
    run(m) {
      const d = attachedWithPage(m);
      const before = write(m, IOVA);
      m.driver.protect(d, IOVA, 4096, "r");
      return [before, write(m, IOVA)];
    },
    correct: ["ok", `fault 0x${FaultReason.WriteNotPermitted.toString(16)}`],
    buggy: ["ok", "ok"],
    report: "stale-cache",
  },
  {
    id: "superpage-split-hole",
    rule: "atomic-superpage-split",
    vtd: { coherent: true }, // no CPU-cache window between a store and its flush: only the split's own window
    run(m) {
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      m.driver.map(d, IOVA, PHYS_A - (PHYS_A % 0x20_0000), 0x20_0000, "rw");
      const still = IOVA + 0x10_0000; // PHYS_B; mapped before and after the unmap below
      const seen = new Set<string>([read(m, still)]);
      // The device keeps reading while the driver unmaps the superpage's first 4 KiB.
      m.platform.afterWrite = () => void seen.add(read(m, still));
      m.driver.unmap(d, IOVA, 4096);
      m.platform.afterWrite = undefined;
      return [...seen].sort();
    },
    correct: ["tag B"],
    buggy: [`fault 0x${FaultReason.ReadNotPermitted.toString(16)}`, "tag B"],
    report: "stale-cache",
  },
  {
    id: "iec-after-irte-change",
    rule: "iec-invalidation",
    vtd: { cachingMode: true, interruptRemapping: true },
    run(m) {
      const remap = (address: number) => {
        const r = m.platform.device.interruptRequest(SID_A, BigInt(address), 0);
        return r.ok ? `vector 0x${(r.data & 0xff).toString(16)}` : `fault 0x${r.reason.toString(16)}`;
      };
      const early = remap(0xfee0_0018); // index 0 before it exists: CM = 1 caches the not-present IRTE
      const irq = m.driver.allocateInterrupt(SID_A, { vector: 0x41 });
      return [early, remap(irq.address)];
    },
    correct: [`fault 0x${FaultReason.IrteNotPresent.toString(16)}`, "vector 0x41"],
    buggy: [`fault 0x${FaultReason.IrteNotPresent.toString(16)}`, `fault 0x${FaultReason.IrteNotPresent.toString(16)}`],
    report: "missing-cm-invalidation",
  },
];
