/**
 * The main commands explain what they saw (issue J item 4): `npm start` with the C test guest
 * and --checker, --trace/--trace-events, --dump, --compare-caching-mode, and the plain-words
 * account of a skipped caching-mode invalidation; `npm run linux` parses and wires the same
 * options (one boot with --checker --dump when a kernel is built).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { linuxGuestReadiness } from "../firmware/linux/build.ts";
import { haveGcc32 } from "./support/multiboot-images.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "v86-explain-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs a command without blocking the test worker (a Linux boot takes a minute; a blocked worker times out vitest's RPC). */
function command(script: string, args: string[], timeout = 120_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(root, script), ...args], { cwd: root, timeout });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}
const start = (...args: string[]) => command("src/main.ts", args);
const linux = (...args: string[]) => command("src/linux/main.ts", args, 600_000);

/** The section of `text` from `heading` to the next blank line. */
function section(text: string, heading: string): string {
  const at = text.indexOf(heading);
  expect(at, `missing section ${heading}`).toBeGreaterThanOrEqual(0);
  const end = text.indexOf("\n\n", at);
  return text.slice(at, end < 0 ? undefined : end);
}

const CM_HEADING = "== what happened: a caching-mode invalidation was left out ==";

describe.skipIf(!haveGcc32())("npm start explains", () => {
  it("says in plain words what a skipped caching-mode invalidation did, without --checker", async () => {
    const run = await start("--cmdline", "skip-cm-invalidation");
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("RESULT cm.stale-fault OBSERVED");
    const text = section(run.stdout, CM_HEADING);
    expect(text).toMatch(/the guest made the context entry of device 00:04\.0 present \(context entry DID (\d+) SLPTPTR 0x[0-9a-f]+ AW 2 TT 0\) without invalidating under CM=1/);
    expect(text).toContain("the unit had cached the not-present entry (negative caching)");
    // The guest's own transcript says it saw a stale fault: the explanation counts at least that one.
    expect(text).toMatch(/kept faulting \([1-9]\d* faults?: ContextEntryNotPresent 0x2\) until the guest's device-selective context-cache invalidation at [\d.]+ ms dropped it/);
    expect(text).toContain("a device-selective context-cache invalidation SID 00:04.0 DID 0");
    expect(text).toContain("(VT-d §6.1)");
    // Without --checker, no report paragraphs.
    expect(run.stdout).not.toContain("== strict checker");
  });

  it("says the same of a skipped interrupt-entry-cache invalidation: the IRTE, its faults, the invalidation that dropped it", async () => {
    const run = await start("--cmdline", "skip-iec-invalidation");
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("RESULT ir.stale-fault OBSERVED");
    const text = section(run.stdout, CM_HEADING);
    expect(text).toMatch(/the guest made interrupt remapping table entry 10 \(device 00:04\.0's interrupts\) present \(interrupt remapping table entry at 0x[0-9a-f]+ = 0x[0-9a-f]+\)/);
    // Only interrupt-remapping faults count here, not the guest's deliberate DMA faults.
    expect(text).toMatch(/kept faulting \(1 fault: IrteNotPresent 0x22\) until the guest's index-selective interrupt-entry-cache invalidation at [\d.]+ ms dropped it/);
    expect(text).toContain("an index-selective interrupt-entry-cache invalidation IIDX 10 IM 0 would have covered it");
  });

  it("--checker: each report as a paragraph with the rule and the missing invalidation", async () => {
    const run = await start("--cmdline", "skip-cm-invalidation", "--checker");
    expect(run.status).toBe(0);
    const text = section(run.stdout, "== strict checker:");
    expect(text).toMatch(/^== strict checker: 1 driver bug \(\d+ requests inspected/m);
    expect(text).toMatch(/^\[1\] missing-cm-invalidation at [\d.]+ ms: device 00:04\.0 \(SID 0x20\) (read|write) at IOVA 0x[0-9a-f]+$/m);
    expect(text).toMatch(/what the guest did: made the entry present without the invalidation caching mode requires: the tables now hold context entry DID \d+/);
    expect(text).toContain("what the unit had cached: context entry ContextEntryNotPresent (0x2)");
    expect(text).toMatch(/rule: .*CAP\.CM = 1.* \(VT-d §6\.1\)/);
    expect(text).toContain("what would have covered it: device-selective context-cache invalidation SID 00:04.0 DID 0");
  });

  it("a correct guest: the checker finds nothing and nothing is explained", async () => {
    const run = await start("--checker");
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^== strict checker: no driver bug \(\d+ requests inspected\) ==$/m);
    expect(run.stdout).not.toContain(CM_HEADING);
  });

  it("--dump and --trace: the views hold the values the guest wrote, the trace is filtered JSON lines", async () => {
    const file = join(work, "trace.jsonl");
    const run = await start("--dump", "--trace", file, "--trace-events", "vtd_reg_write,vtd_inv*");
    expect(run.status).toBe(0);
    const events = readFileSync(file, "utf8").trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(["vtd_reg_write", "vtd_inv", "vtd_inv_wait", "vtd_inv_iec"]));
    expect(run.stderr).toContain(`trace: ${events.length} events written to ${file}`);
    for (const e of events) expect(e.value ?? "0x0").toMatch(/^0x[0-9a-f]+$/);

    // RTADDR: the guest's last write of it (one 8-byte or two 4-byte writes), as the dump shows it.
    let rtaddr = 0n;
    for (const e of events.filter((e) => e.type === "vtd_reg_write")) {
      const value = BigInt(e.value as string);
      if (e.offset === 0x20 && e.size === 8) rtaddr = value;
      else if (e.offset === 0x20) rtaddr = (rtaddr & ~0xffff_ffffn) | value;
      else if (e.offset === 0x24) rtaddr = (rtaddr & 0xffff_ffffn) | (value << 32n);
    }
    expect(rtaddr).not.toBe(0n);
    const regset = section(run.stdout, "== iommu_regset ==");
    expect(regset).toContain(`RTADDR              0x020   0x${rtaddr.toString(16).padStart(16, "0")}`);
    const tables = section(run.stdout, "== dmar_translation_struct ==");
    expect(tables).toContain(`Root Table Address: 0x${rtaddr.toString(16)}`);
    const row = tables.match(/^00:04\.0 {2}0x[0-9a-f]{16}:0x[0-9a-f]{16} {2}0x[0-9a-f]{16}:0x([0-9a-f]{16}) {2}(\d+) +2 +0 +0x([0-9a-f]+)$/m);
    expect(row, tables).not.toBeNull();
    const did = row![2]!;
    expect(BigInt(`0x${row![1]}`) & ~0xfffn).toBe(BigInt(`0x${row![3]}`));
    // The mappings of edu's domain (a blank line separates them from the table of entries).
    const mappings = run.stdout.slice(run.stdout.indexOf(`Device 00:04.0 @0x${row![3]} (DID ${did}, 4-level)`));
    expect(mappings).toMatch(/^0x[0-9a-f]{13} \| 4K {4}rw {4}0x[0-9a-f]+/m);
    expect(mappings).toMatch(/^0x[0-9a-f]{13} \| 4K {4}r- {4}0x[0-9a-f]+/m);
    expect(mappings).toMatch(/^0x[0-9a-f]{13} \| 2M {4}rw {4}0x[0-9a-f]+/m);

    // The queue: head and tail as IQH/IQT show them, the last descriptors decoded; one IOTLB descriptor per traced queued IOTLB invalidation at most.
    const iqh = BigInt(regset.match(/^IQH +0x080 +(0x[0-9a-f]+)$/m)![1]!);
    const queue = section(run.stdout, "== invalidation_queue ==");
    expect(queue).toContain(`Head: ${Number(iqh >> 4n)}\t`);
    expect(queue).toMatch(/^ +\d+ {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}wait /m);
    expect(queue).toMatch(/^ +\d+ {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}iotlb page DID \d+ ADDR 0x[0-9a-f]+ AM \d+$/m);

    // The caches: edu's context (the DID of its context entry) and its domain's translations.
    const caches = run.stdout.slice(run.stdout.indexOf("== context cache ("));
    expect(caches).toMatch(new RegExp(`^ {2}00:04\\.0 {2}DID ${did} SLPTPTR 0x${row![3]} AW 2 TT 0$`, "m"));
    expect(caches).toMatch(new RegExp(`^== IOTLB \\([1-9]\\d* entries\\) ==\\n {2}DID ${did} {2}IOVA 0x`, "m"));
    expect(run.stdout).not.toContain(CM_HEADING);
  });

  it("--compare-caching-mode: a side-by-side table with more invalidations under CM=1, and why", async () => {
    const run = await start("--compare-caching-mode", "--deterministic");
    expect(run.status).toBe(0);
    const table = section(run.stdout, "== caching mode: CM=0 vs CM=1 ==");
    const row = (name: string) => {
      const m = table.match(new RegExp(`^${name.replace(/[()]/g, "\\$&")} +(\\S+) +(\\S+) +(\\S+)$`, "m"));
      expect(m, `row ${name}`).not.toBeNull();
      return [Number(m![1]), Number(m![2])] as const;
    };
    const [off, on] = row("invalidations: total");
    expect(on).toBeGreaterThan(off);
    const [pageOff, pageOn] = row("invalidations: iotlb page");
    expect(pageOn).toBeGreaterThan(pageOff);
    const [waitsOff, waitsOn] = row("invalidation waits");
    expect(waitsOn).toBeGreaterThanOrEqual(waitsOff);
    row("faults");
    row("guest time (ms)");
    expect(table).toMatch(/^guest outcome +exit 0 +exit 0$/m);
    expect(table).toContain(`why: with CM=1 the unit may cache not-present entries (VT-d §6.1)`);
    expect(table).toContain(`${on - off} more invalidations`);
    expect(run.stderr).toContain("caching mode off");
    expect(run.stderr).toContain("caching mode on");
  });
});

describe("bad explain options name the option (exit 2)", () => {
  it("npm start: an unwritable --trace file, a bad or empty --trace-events pattern", async () => {
    let run = await start("--trace", join(work, "no-such-dir", "t.jsonl"));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/error: option --trace: cannot write .*no-such-dir/);
    run = await start("--trace", join(work, "t.jsonl"), "--trace-events", "vtd_nothing*");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('option --trace-events: "vtd_nothing*" matches no trace event');
    run = await start("--trace", join(work, "t.jsonl"), "--trace-events", "vtd_inv;rm");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('option --trace-events: "vtd_inv;rm" is not an event name or glob');
    run = await start("--trace-events", "vtd_inv");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("option --trace-events: needs --trace FILE");
    run = await start("--trace");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("option --trace needs a value");
  });

  it("npm run linux: the same options, refused before any build or boot", async () => {
    let run = await linux("--trace", join(work, "no-such-dir", "t.jsonl"), "--checker", "--dump");
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/error: option --trace: cannot write .*no-such-dir/);
    run = await linux("--trace", join(work, "t.jsonl"), "--trace-events", "nothing");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('option --trace-events: "nothing" matches no trace event');
    run = await linux("--dump", "--checker", "dump");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("unknown option dump (options start with --)");
    run = await linux("--help");
    expect(run.status).toBe(0);
    for (const option of ["--checker", "--trace <file>", "--trace-events <pattern>", "--dump", "--compare-caching-mode"]) expect(run.stdout).toContain(option);
  });
});

const linuxReady = linuxGuestReadiness().ready;

describe.skipIf(!linuxReady)("npm run linux explains (one boot)", () => {
  it("--checker --dump: no driver bug from Linux, and the dump shows virtio-blk's context and the queue Linux used", async () => {
    const run = await linux("--checker", "--dump", "--quiet", "--workload-mib", "1", "--deterministic");
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^== strict checker: no driver bug \(\d+ requests inspected\) ==$/m);
    const inspected = Number(run.stdout.match(/no driver bug \((\d+) requests inspected/)![1]);
    expect(inspected).toBeGreaterThan(0);
    const regset = section(run.stdout, "== iommu_regset ==");
    const rtaddr = BigInt(regset.match(/^RTADDR +0x020 +(0x[0-9a-f]+)$/m)![1]!);
    expect(rtaddr).not.toBe(0n);
    const tables = section(run.stdout, "== dmar_translation_struct ==");
    expect(tables).toContain(`Root Table Address: 0x${(rtaddr & ~0xfffn).toString(16)}`);
    expect(tables).toMatch(/^00:09\.0 {2}0x/m);
    expect(run.stdout).toMatch(/^Invalidation queue on IOMMU: dmar0\n Base: 0x[0-9a-f]+\tHead: \d+\tTail: \d+/m);
    expect(run.stdout).toMatch(/^== context cache \([1-9]\d* entries\) ==$/m);
  }, 600_000);
});
