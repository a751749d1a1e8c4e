/**
 * A guest written for QEMU's q35 + intel-iommu + edu (test/guests/qemu-written-guest.c) boots in
 * v86 without firmware and must see what it sees on QEMU 10.0 (where SeaBIOS runs before a
 * `-kernel` multiboot guest): mem_lower/mem_upper in the multiboot information, configuration
 * mechanism #1 with CONFIG_ADDRESS bits 1:0 set and byte/word accesses to 0xCFC-0xCFF, edu's
 * BAR0 decoding where the firmware left it with no write to a BAR or the command register.
 * RESULT lines must be identical; PLATFORM lines (slot, BAR address, IRQ line, exact memory
 * sizes) may differ; INFO lines are departures docs/conformance.md documents, checked per side.
 * Both machines have 128 MiB (QEMU's default). Skipped without gcc/ld; the QEMU half is skipped
 * without QEMU 10.0 unless REQUIRE_QEMU=1, which makes it fail.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuUnavailable, runOnQemu, type GuestRun } from "../firmware/qemu.ts";
import { runMultibootGuest, type RunGuestResult } from "../src/v86/run-guest.ts";
import { buildCGuest, haveGcc32 } from "./support/multiboot-images.ts";

const gcc = haveGcc32();
const qemuMissing = qemuUnavailable();
const required = process.env.REQUIRE_QEMU === "1";
if (!gcc) console.warn("qemu-written-guest.test skipped: gcc/ld for -m32 not found");
else if (qemuMissing && !required) console.warn(`qemu-written-guest.test: QEMU comparison skipped: ${qemuMissing}`);

interface Line {
  kind: "RESULT" | "PLATFORM" | "INFO";
  name: string;
  value: number;
}

function lines(transcript: string): Line[] {
  return [...transcript.matchAll(/^(RESULT|PLATFORM|INFO) (\w+)=0x([0-9a-f]{8})\r?$/gm)].map((m) => ({
    kind: m[1] as Line["kind"],
    name: m[2]!,
    value: parseInt(m[3]!, 16),
  }));
}

function values(transcript: string, kind: Line["kind"]): Map<string, number> {
  return new Map(lines(transcript).filter((l) => l.kind === kind).map((l) => [l.name, l.value]));
}

const hex = (l: Line) => `${l.kind} ${l.name}=0x${l.value.toString(16).padStart(8, "0")}`;
/** CONFIG_ADDRESS as the guest last wrote it before its narrow reads: register 0x08 | 2 of edu. */
const LAST_CONFIG_ADDRESS_LOW_WORD = 0x080a;

describe.skipIf(!gcc)("a guest written for QEMU's q35 + intel-iommu + edu, booted without firmware", () => {
  let kernel: Uint8Array;
  let v86: RunGuestResult;
  let work: string;

  beforeAll(async () => {
    kernel = buildCGuest("qemu-written-guest");
    v86 = await runMultibootGuest({ kernel, memoryMiB: 128, timeoutMs: 60_000 });
  }, 90_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("runs to its end and exits with 0", () => {
    expect(v86.transcript).toContain("guest: done");
    expect({ exitCode: v86.exitCode, stopReason: v86.stopReason }).toEqual({ exitCode: 0, stopReason: "exit" });
  });

  it("gets mem_lower/mem_upper (flags bit 0) that agree with the memory map", () => {
    const r = values(v86.transcript, "RESULT");
    const p = values(v86.transcript, "PLATFORM");
    expect(r.get("mb_magic")).toBe(0x2bad_b002);
    expect(r.get("mb_flag_mem")).toBe(1);
    expect(p.get("mb_mem_lower_kib")).toBe(640);
    expect(p.get("mb_mem_upper_kib")).toBe(127 * 1024);
    for (const check of ["mb_mem_lower_in_range", "mb_mem_lower_matches_mmap", "mb_mem_upper_matches_mmap", "mb_mmap_has_1mib_range"]) {
      expect(r.get(check), check).toBe(1);
    }
  });

  it("finds edu's BAR0 at its reset address decoding, as SeaBIOS leaves it (command 0x0103), and uses it unprogrammed", () => {
    const r = values(v86.transcript, "RESULT");
    expect(values(v86.transcript, "PLATFORM").get("edu_bar0")).toBe(0xfea0_0000);
    expect(r.get("edu_command_at_boot")).toBe(0x0103);
    expect(r.get("edu_id")).toBe(0x0100_00ed);
    expect(r.get("edu_liveness")).toBe(~0x1234_5678 >>> 0);
    expect(r.get("edu_factorial_5")).toBe(120);
    expect(r.get("edu_subsystem")).toBe(0x1100_1af4);
  });

  it("decodes CONFIG_ADDRESS bits 1:0 and the data port's byte lanes as QEMU does", () => {
    const r = values(v86.transcript, "RESULT");
    expect([0, 1, 2, 3].map((low) => r.get(`cfg_dword_low${low}`))).toEqual([0x11e81234, 0x0311e812, 0x010311e8, 0x10010311]);
    expect([0, 1, 2, 3].map((low) => r.get(`cfg_address_low${low}`))).toEqual([0x8000_0000, 0x8000_0001, 0x8000_0002, 0x8000_0003]);
    expect(["cfc", "cfd", "cfe", "cff"].map((port) => r.get(`cfg_b_low1_${port}`))).toEqual([0x12, 0x12, 0x11, 0x11]);
    expect(r.get("cfg_disabled_dword")).toBe(0xffff_ffff);
    expect(r.get("cfg_cls_after_misaligned_writes")).toBe(0);
  });

  it("INFO: narrow reads of CONFIG_ADDRESS are all ones (PCI 3.0), not QEMU's low bytes of the register", () => {
    const info = values(v86.transcript, "INFO");
    expect([...info.entries()]).toEqual([
      ["cfg_address_byte_cf8", 0xff],
      ["cfg_address_byte_cfa", 0xff],
      ["cfg_address_byte_cfb", 0xff],
      ["cfg_address_word_cf8", 0xffff],
      ["cfg_address_word_cfa", 0xffff],
    ]);
  });

  describe.skipIf(qemuMissing !== null && !required)("compared with QEMU 10.0 (SeaBIOS runs before the multiboot guest there)", () => {
    let qemu: GuestRun;

    beforeAll(async () => {
      if (qemuMissing) throw new Error(`REQUIRE_QEMU=1 but QEMU is unavailable: ${qemuMissing}`);
      work = mkdtempSync(join(tmpdir(), "qemu-written-guest-"));
      const elf = join(work, "guest.elf");
      writeFileSync(elf, kernel);
      qemu = await runOnQemu({ kernel: elf, timeoutMs: 60_000 });
    }, 90_000);

    it("QEMU runs the guest to its end", () => {
      expect(qemu.transcript, qemu.diagnostics).toContain("guest: done");
      expect(qemu.exitCode, qemu.diagnostics).toBe(0);
    });

    it("every RESULT line is identical, line by line", () => {
      const ours = lines(v86.transcript).filter((l) => l.kind === "RESULT").map(hex);
      const theirs = lines(qemu.transcript).filter((l) => l.kind === "RESULT").map(hex);
      expect(theirs.length).toBeGreaterThan(60);
      expect(ours).toEqual(theirs);
    });

    it("PLATFORM lines are the same names; INFO lines are QEMU's low bytes of CONFIG_ADDRESS", () => {
      const names = (t: string) => lines(t).filter((l) => l.kind === "PLATFORM").map((l) => l.name);
      expect(names(v86.transcript)).toEqual(names(qemu.transcript));
      const info = values(qemu.transcript, "INFO");
      expect([...info.keys()]).toEqual([...values(v86.transcript, "INFO").keys()]);
      for (const [name, value] of info) {
        expect(value, name).toBe(name.includes("byte") ? LAST_CONFIG_ADDRESS_LOW_WORD & 0xff : LAST_CONFIG_ADDRESS_LOW_WORD);
      }
    });
  });
});
