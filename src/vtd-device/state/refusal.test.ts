/**
 * Bad snapshots: another format, version or configuration, truncated or damaged JSON, a section
 * of the wrong length or type, inconsistent registers, random byte flips. Each is refused with a
 * SnapshotError naming the problem, and the unit goes on exactly as a twin that was never asked.
 */
import { describe, expect, it } from "vitest";
import { Reg } from "../../spec/registers.ts";
import type { Machine } from "../../../test/support/tables.ts";
import { run, setUp, steps, twin, type World } from "../../../test/support/unit-workload.ts";
import { mulberry32 } from "../../../test/support/vfio-workload.ts";
import { SnapshotError } from "./codec.ts";

interface Rig {
  a: Machine;
  world: World;
  text: string;
  /** Restored from `text`: the unit bad snapshots are offered to. */
  b: Machine;
  /** Restored from `text` too, never offered anything. */
  twinOfB: Machine;
}

function rig(seed: number): Rig {
  const { m: a, world } = setUp();
  run(a, world, steps(seed, 300));
  const text = JSON.stringify(a.device.saveState());
  const b = twin(a), twinOfB = twin(a);
  b.device.restoreState(text);
  twinOfB.device.restoreState(text);
  return { a, world, text, b, twinOfB };
}

/** Offers `bad` to the rig's unit: refused with a message matching `message`, the unit unchanged. */
function refused(r: Rig, bad: unknown, message: RegExp): void {
  let error: unknown;
  try {
    r.b.device.restoreState(bad as string);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(SnapshotError);
  expect((error as Error).message).toMatch(message);
  expect(JSON.stringify(r.b.device.saveState())).toBe(JSON.stringify(r.twinOfB.device.saveState()));
}

/** The snapshot as an object, changed by `edit`. */
function edited(r: Rig, edit: (s: any) => void): unknown {
  const s = JSON.parse(r.text);
  edit(s);
  return s;
}

/** The unit refused things and still runs the rest of a workload exactly as its twin. */
function stillWorks(r: Rig, seed: number): void {
  const list = steps(seed, 200);
  expect(run(r.b, r.world, list)).toEqual(run(r.twinOfB, r.world, list));
  expect(r.b.device.stats).toEqual(r.twinOfB.device.stats);
  expect(Buffer.compare(r.b.ram.direct, r.twinOfB.ram.direct)).toBe(0);
}

describe("refused snapshots", () => {
  it("another format, version or configuration", () => {
    const r = rig(101);
    refused(r, edited(r, (s) => (s.version = 99)), /^snapshot version 99 is not 2$/);
    refused(r, edited(r, (s) => (s.format = "qemu")), /^snapshot format "qemu" is not "v86-vtd-unit"$/);
    refused(r, edited(r, (s) => (s.configuration.cachingMode = false)), /^snapshot configuration differs: cachingMode false \(snapshot\) vs true \(this unit\)$/);
    refused(r, edited(r, (s) => (s.configuration.iotlbEntries = 4096)), /configuration differs: iotlbEntries 4096 \(snapshot\) vs 64/);
    refused(r, edited(r, (s) => delete s.configuration.awBits), /configuration differs: awBits undefined \(snapshot\) vs 48/);
    refused(r, 42, /^snapshot: expected an object or its JSON text, got 42$/);
    refused(r, null, /got null/);
    stillWorks(r, 102);
  });

  it("truncated or damaged JSON text", () => {
    const r = rig(103);
    for (const cut of [0, 1, 100, r.text.length >> 1, r.text.length - 1]) refused(r, r.text.slice(0, cut), /^snapshot is not valid JSON/);
    refused(r, r.text + "}", /^snapshot is not valid JSON/);
    stillWorks(r, 104);
  });

  it("sections of the wrong length, type or range", () => {
    const r = rig(105);
    refused(r, edited(r, (s) => (s.iotlb.entries = s.iotlb.entries.slice(0, 12))), /^snapshot section iotlb: entries: expected 256 numbers, got 12$/);
    refused(r, edited(r, (s) => s.contextCache.tag.pop()), /^snapshot section contextCache: tag: expected 8 numbers, got 7$/);
    refused(r, edited(r, (s) => (s.translation.enabled = "yes")), /^snapshot section translation: enabled: expected true or false, got "yes"$/);
    refused(r, edited(r, (s) => (s.registers.bytes = s.registers.bytes.slice(2))), /^snapshot section registers: bytes: expected \d+ bytes/);
    refused(r, edited(r, (s) => (s.registers.bytes = 7)), /registers: bytes: expected a hex string, got 7/);
    refused(r, edited(r, (s) => delete s.queue), /^snapshot section queue: missing or not an object/);
    refused(r, edited(r, (s) => (s.queue.head = 999)), /^snapshot section queue: head: expected an integer in 0\.\.255, got 999$/);
    refused(r, edited(r, (s) => (s.queue.now = -1)), /queue: now: expected a number/);
    refused(r, edited(r, (s) => (s.queue.pending.entries = [[1, 2]])), /queue\.pending: entries\[0\]: expected \[sid, start, end, due, order, timesOut\]/);
    refused(r, edited(r, (s) => (s.faults.next = 4)), /^snapshot section faults: next: expected an integer in 0\.\.3, got 4$/);
    refused(r, edited(r, (s) => (s.stats.translations = -3)), /^snapshot section stats: translations: expected an integer/);
    refused(r, edited(r, (s) => delete s.stats.iotlbInvalidations.page), /stats\.iotlbInvalidations: page: expected an integer/);
    refused(r, edited(r, (s) => (s.interruptEntryCache.w0[0] = 1.5)), /interruptEntryCache: w0\[0\]: expected an integer/);
    refused(r, edited(r, (s) => (s.deviceTlbs = { slots: "none" })), /deviceTlbs: slots: expected an object/);
    stillWorks(r, 106);
  });

  it("contents that contradict themselves", () => {
    const r = rig(107);
    // A context-cache tag moved to a slot it does not hash to.
    refused(r, edited(r, (s) => {
      const at = s.contextCache.tag.findIndex((t: number) => t !== 0);
      s.contextCache.tag[(at + 1) % 8] = s.contextCache.tag[at];
    }), /contextCache: tag\[\d\]: source-id \d+ does not belong in slot \d/);
    // An IOTLB entry moved to another set.
    refused(r, edited(r, (s) => {
      const e = s.iotlb.entries;
      const at = e.findIndex((k: number, i: number) => i % 4 === 0 && k !== 0);
      const to = (at + 16 * 3) % e.length;
      for (let i = 0; i < 4; i++) e[to + i] = e[at + i];
    }), /iotlb: entries\[\d+\.\.\d+\]: domain \d+ page \d+ (does not belong in this set|is cached twice)/);
    // GSTS says translation is off while the translator latched it on.
    refused(r, edited(r, (s) => {
      const at = 2 * Reg.GSTS + 6; // the byte holding TES (bit 31)
      s.registers.bytes = s.registers.bytes.slice(0, at) + (parseInt(s.registers.bytes.slice(at, at + 2), 16) ^ 0x80).toString(16).padStart(2, "0") + s.registers.bytes.slice(at + 2);
    }), /^snapshot section registers: GSTS\.TES is 0 but translation\.enabled is true$/);
    // CAP of another unit.
    refused(r, edited(r, (s) => (s.registers.bytes = s.registers.bytes.slice(0, 2 * Reg.CAP) + "ff" + s.registers.bytes.slice(2 * Reg.CAP + 2))), /registers: CAP dword at 0x8/);
    // A number changed that every check above accepts: only the checksum sees it.
    refused(r, edited(r, (s) => (s.queue.now += 1)), /^snapshot checksum \d+ does not match its content \(\d+\): the snapshot is damaged$/);
    refused(r, edited(r, (s) => delete s.checksum), /^snapshot checksum undefined does not match/);
    stillWorks(r, 108);
  });

  it("random byte flips in the JSON text are refused, or change nothing", () => {
    const r = rig(109);
    const random = mulberry32(110);
    const messages = new Set<string>();
    let accepted = 0;
    for (let i = 0; i < 300; i++) {
      const at = Math.floor(random() * r.text.length);
      const flipped = String.fromCharCode(r.text.charCodeAt(at) ^ (1 << Math.floor(random() * 7)));
      const bad = r.text.slice(0, at) + flipped + r.text.slice(at + 1);
      try {
        r.b.device.restoreState(bad);
        // Accepted only when the flip changed no value (e.g. "e" to "E" in an exponent).
        accepted++;
        expect(JSON.stringify(JSON.parse(bad))).toBe(r.text);
      } catch (error) {
        expect(error).toBeInstanceOf(SnapshotError);
        messages.add((error as Error).message.replace(/[\d.]+/g, "#").slice(0, 60));
      }
      expect(JSON.stringify(r.b.device.saveState())).toBe(r.text === bad ? r.text : JSON.stringify(r.twinOfB.device.saveState()));
    }
    expect(accepted).toBeLessThan(10);
    expect(messages.size).toBeGreaterThan(2);
    stillWorks(r, 111);
  });

  it("a refused snapshot leaves a unit with live state untouched (not only a freshly restored one)", () => {
    const r = rig(112);
    const list = steps(113, 100);
    run(r.b, r.world, list);
    run(r.twinOfB, r.world, list);
    const other = setUp({ cachingMode: true, interruptRemapping: true }).m.device.saveState();
    refused(r, other, /^snapshot configuration differs: faultRecords 1 \(snapshot\) vs 4 \(this unit\)$/);
    refused(r, edited(r, (s) => (s.iotlb.nextVictim[0] = 9)), /iotlb: nextVictim\[0\]: expected an integer in 0\.\.3, got 9/);
    stillWorks(r, 114);
    void r.a;
  });
});
