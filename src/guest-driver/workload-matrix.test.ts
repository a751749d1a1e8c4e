/**
 * One workload under every combination of CM (caching mode), C (coherent page walks), RWBF and
 * strict/lazy unmapping. Prints what each configuration cost, by kind, and asserts the rules:
 * what must be invalidated, flushed or written back under each, and that the device always saw
 * exactly the mappings the driver meant (no unexpected fault, no stale success in strict mode).
 * The workload and its rules live in testing.ts: test/guest-driver-v86.test.ts runs them on v86.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  expectWorkloadRules, formatTable, runWorkload, testMachine, WORKLOAD_TABLE_HEADER, workloadConfigs, workloadName, workloadRow, workloadUnit,
} from "../../test/support/driver-scenarios.ts";

const rows: string[][] = [];

describe("the same workload under every configuration", () => {
  for (const cfg of workloadConfigs()) {
    it(workloadName(cfg), () => {
      const r = runWorkload(testMachine(workloadUnit(cfg), { mode: cfg.mode }), cfg.mode);
      rows.push(workloadRow(cfg, r));
      expectWorkloadRules(expect, cfg, r);
    });
  }

  afterAll(() => {
    console.log(formatTable(WORKLOAD_TABLE_HEADER, rows));
  });
});
