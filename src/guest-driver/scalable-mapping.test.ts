/**
 * The driver in scalable mode: mapping and unmapping through first-stage and second-stage
 * domains, strict and lazy, CM = 0 and 1. Each case asserts the descriptors the driver issued (in
 * Linux 6.1's order and kinds: PASID-based IOTLB for first stage, the IOTLB descriptor for second
 * stage, CM invalidations only where CM governs) and that a device's DMA sees exactly what the
 * tables map, page by page, after every step.
 */
import { describe, expect, it } from "vitest";
import { Iqa, Reg, Rtaddr } from "../spec/registers.ts";
import { getField } from "../spec/field.ts";
import { FirstStagePte, TranslationTableMode } from "../spec/scalable.ts";
import { deviceRead, deviceWrite, readTag, SID_A, SID_B, tag, unflushedTableLines } from "../../test/support/driver-scenarios.ts";
import { SCALABLE_DRIVER_CASES, scalableMachine, type ScalableMachine } from "../../test/support/scalable-driver.ts";
import type { Domain } from "./domain.ts";

const PHYS = 0x40_0000;
const PAGE = 4096;

/** Every page of [start, end) tagged with its own number, so a DMA read tells which page it reached. */
function tagPages(m: ScalableMachine, start: number, pages: number): void {
  for (let i = 0; i < pages; i++) tag(m.platform, start + i * PAGE, 0x5a00_0000 + (start + i * PAGE) / PAGE);
}

/** A read of each page of [start, end) succeeds exactly where the domain's tables map it, and reaches the page they name. */
function expectDmaSeesTables(m: ScalableMachine, d: Domain, start: number, end: number, sid = SID_A): void {
  for (let iova = start; iova < end; iova += PAGE) {
    const t = d.lookup(iova);
    const r = deviceRead(m.platform, sid, iova);
    expect({ iova, ok: r.ok }).toEqual({ iova, ok: t !== undefined });
    if (r.ok && t) expect(readTag(r.bytes)).toBe(0x5a00_0000 + t.phys / PAGE);
  }
}

/** The descriptors issued since `from`. */
const since = (m: ScalableMachine, from: number) => m.issued.slice(from);


describe("scalable mode is programmed", () => {
  it("RTADDR.TTM = 01, IQA.DW = 1, and after SRTP global context-cache, PASID-cache and IOTLB invalidations", () => {
    const m = scalableMachine();
    expect(m.driver.scalableMode).toBe(true);
    const rtaddr = m.platform.device.readRegister(Reg.RTADDR, 8);
    expect(Number(getField(rtaddr, Rtaddr.TTM))).toBe(TranslationTableMode.Scalable);
    expect(Number(getField(m.platform.device.readRegister(Reg.IQA, 8), Iqa.DW))).toBe(1);
    expect(m.issued.filter((d) => !d.startsWith("type 4"))).toEqual(["context-global", "pasid-cache g 3 did 0 pasid 0", "iotlb-global"]);
  });

  it("the stage defaults as Linux 6.1's DMA domains: first when both are offered, else the one offered", () => {
    expect(scalableMachine().driver.domainStage).toBe("first");
    expect(scalableMachine({ firstStage: false, secondStage: true }).driver.domainStage).toBe("second");
    expect(scalableMachine({ firstStage: true, secondStage: false }).driver.domainStage).toBe("first");
    expect(scalableMachine({}, { stage: "second" }).driver.domainStage).toBe("second");
  });
});

describe.each(SCALABLE_DRIVER_CASES)("$stage stage, CM = $cm, $mode", ({ stage, cm, mode }) => {
  const attachIssued = (did: number) => cm
    ? [`pasid-cache g 1 did ${did} pasid 0`, `pasid-iotlb did ${did} pasid 0`, `context-device sid 0x20 did 0`, `iotlb-domain did ${did}`]
    : [];
  const pageInvalidation = (did: number, address: number, am: number) => stage === "first"
    ? `pasid-iotlb-page did ${did} pasid 0 addr 0x${address.toString(16)} am ${am}`
    : `iotlb-page did ${did} addr 0x${address.toString(16)} am ${am}`;

  it("attach, map, DMA, unmap: the invalidations issued and DMA exactly the mappings at every step", async () => {
    const m = scalableMachine({ cachingMode: cm }, { stage, mode });
    const d = m.driver.createDomain();
    expect(d.stage).toBe(stage);
    let mark = m.issued.length;
    m.driver.attach(SID_A, d);
    expect(since(m, mark)).toEqual(attachIssued(d.did));

    tagPages(m, PHYS, 16);
    mark = m.issued.length;
    const a = m.driver.mapBuffer(d, PHYS, 4 * PAGE, "rw");
    const b = m.driver.mapBuffer(d, PHYS + 8 * PAGE, 2 * PAGE, "r");
    // CM governs second-stage structures only: a first-stage map owes no invalidation (VT-d §6.1).
    expect(since(m, mark)).toEqual(cm && stage === "second" ? [pageInvalidation(d.did, a, 2), pageInvalidation(d.did, b, 1)] : []);
    const lo = Math.min(a, b), hi = Math.max(a + 4 * PAGE, b + 2 * PAGE) + PAGE;
    expectDmaSeesTables(m, d, lo, hi);
    expect(deviceWrite(m.platform, SID_A, a + PAGE, new Uint8Array([1, 2, 3, 4])).ok).toBe(true);
    const landed = new Uint8Array(4);
    m.platform.ram.read(BigInt(PHYS + PAGE), landed);
    expect(landed).toEqual(new Uint8Array([1, 2, 3, 4]));
    tag(m.platform, PHYS + PAGE, 0x5a00_0000 + (PHYS + PAGE) / PAGE);
    expect(deviceWrite(m.platform, SID_A, b, new Uint8Array(4)).ok).toBe(false); // read-only mapping

    mark = m.issued.length;
    m.driver.unmapBuffer(d, a, 4 * PAGE);
    if (mode === "strict") {
      expect(since(m, mark)).toEqual([pageInvalidation(d.did, a, 2)]);
    } else {
      expect(since(m, mark)).toEqual([]);
      expect(m.driver.pendingUnmaps).toBe(1);
      m.driver.flush();
      // The flush queue: page-selective under CM (exact for a shadow), else the whole domain (Linux 6.1).
      const whole = stage === "first" ? `pasid-iotlb did ${d.did} pasid 0` : `iotlb-domain did ${d.did}`;
      expect(since(m, mark)).toEqual([cm ? pageInvalidation(d.did, a, 2) : whole]);
      await m.platform.settle(Promise.resolve());
    }
    expect(d.lookup(a)).toBeUndefined();
    expectDmaSeesTables(m, d, lo, hi);
    expect(unflushedTableLines(m)).toEqual([]);
  });

  it("detach clears the PASID entry, then the context entry, each with its invalidations in Linux 6.1's order; DMA then faults", () => {
    const m = scalableMachine({ cachingMode: cm }, { stage, mode });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const iova = m.driver.mapBuffer(d, PHYS, PAGE, "r");
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
    const mark = m.issued.length;
    m.driver.detach(SID_A);
    const iotlb = stage === "first" ? `pasid-iotlb did ${d.did} pasid 0` : `iotlb-domain did ${d.did}`;
    // intel_pasid_tear_down_entry, then domain_context_clear_one: context, every PASID of the domain (G = 00), IOTLB.
    expect(since(m, mark)).toEqual([
      `pasid-cache g 1 did ${d.did} pasid 0`, iotlb,
      `context-device sid 0x20 did ${d.did}`, `pasid-cache g 0 did ${d.did} pasid 0`, `iotlb-domain did ${d.did}`,
    ]);
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(false);
  });
});

describe("superpages where the unit offers them", () => {
  for (const stage of ["first", "second"] as const) {
    it(`${stage} stage: 2 MiB and 1 GiB leaves, DMA through them, a 4 KiB unmap inside splits without touching the rest`, () => {
      const m = scalableMachine({}, { stage });
      const d = m.driver.createDomain();
      m.driver.attach(SID_A, d);
      const caps = m.driver.caps;
      const gib = stage === "first" ? caps.firstStage1G : caps.superpage1G;
      const mib2 = stage === "first" || caps.superpage2M;
      tagPages(m, 0x200_0000, 4);
      m.driver.map(d, 0x4000_0000, 0, 2 ** 30, "rw");
      m.driver.map(d, 0x8020_0000, 0x200_0000, 2 ** 21, "r");
      expect(d.lookup(0x4000_0000)!.level).toBe(gib ? 3 : mib2 ? 2 : 1);
      expect(d.lookup(0x8020_0000)!.level).toBe(mib2 ? 2 : 1);
      expectDmaSeesTables(m, d, 0x4200_0000, 0x4200_4000);
      expectDmaSeesTables(m, d, 0x8020_0000, 0x8020_4000);
      const mark = m.issued.length;
      m.driver.unmap(d, 0x8020_1000, PAGE);
      expect(since(m, mark)).toHaveLength(1);
      expect(since(m, mark)[0]).toMatch(stage === "first" ? /^pasid-iotlb-page did \d+ pasid 0 addr 0x80201000 am 0$/ : /^iotlb-page did \d+ addr 0x80201000 am 0$/);
      expectDmaSeesTables(m, d, 0x8020_0000, 0x8020_4000);
      expect(deviceRead(m.platform, SID_A, 0x8020_1000).ok).toBe(false);
      expect(deviceRead(m.platform, SID_A, 0x8020_2000).ok).toBe(true);
    });
  }
});

describe("other attachments", () => {
  it("an identity (pass-through) attachment: PGTT 100, DMA reaches the bus address itself", () => {
    const m = scalableMachine({}, {});
    const d = m.driver.createDomain();
    m.driver.attach(SID_B, d, { passThrough: true });
    tag(m.platform, PHYS, 0x1234);
    const r = deviceRead(m.platform, SID_B, PHYS);
    expect(r.ok && readTag(r.bytes)).toBe(0x1234);
  });

  it("first stage: a read-only page refuses a write until protect makes it writable (a PASID-based IOTLB invalidation of the page)", () => {
    const m = scalableMachine({}, { stage: "first" });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    const iova = m.driver.mapBuffer(d, PHYS, PAGE, "r");
    expect(deviceWrite(m.platform, SID_A, iova, new Uint8Array(4)).ok).toBe(false);
    const mark = m.issued.length;
    m.driver.protect(d, iova, PAGE, "rw");
    expect(since(m, mark)).toEqual([`pasid-iotlb-page did ${d.did} pasid 0 addr 0x${iova.toString(16)} am 0`]);
    expect(deviceWrite(m.platform, SID_A, iova, new Uint8Array(4)).ok).toBe(true);
  });

  it("two devices in two domains of different stages stay apart", () => {
    const m = scalableMachine({}, { stage: "first" });
    const first = m.driver.createDomain();
    m.driver.attach(SID_A, first);
    const second = scalableMachine({}, { stage: "second" });
    expect(first.stage).toBe("first");
    expect(second.driver.createDomain().stage).toBe("second");
    const iova = m.driver.mapBuffer(first, PHYS, PAGE, "r");
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
    expect(deviceRead(m.platform, SID_B, iova).ok).toBe(false);
  });
});

describe("first-stage entries as the spec wants them", () => {
  it("Accessed preset in every entry and Dirty in writable leaves, so a DMA write changes no table byte; a read-only leaf has neither R/W nor D", () => {
    const m = scalableMachine({}, { stage: "first" });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d);
    m.driver.map(d, 0x10_0000, PHYS, PAGE, "rw");
    m.driver.map(d, 0x10_1000, PHYS + PAGE, PAGE, "r");
    const entry = (iova: number, level: number): bigint => {
      let table = d.tables.root;
      for (let l = 4; ; l--) {
        const at = table + (Math.floor(iova / 2 ** (12 + 9 * (l - 1))) % 512) * 8;
        const value = readQword(m, at);
        if (l === level) return value;
        table = Number(value & 0x000f_ffff_ffff_f000n);
      }
    };
    const { P, RW, US, A, D } = FirstStagePte;
    for (let level = 4; level >= 2; level--) expect(entry(0x10_0000, level) & 0xfffn).toBe(BigInt(P | RW | US | A));
    expect(entry(0x10_0000, 1) & 0xfffn).toBe(BigInt(P | RW | US | A | D));
    expect(entry(0x10_1000, 1) & 0xfffn).toBe(BigInt(P | US | A));
    const before = [4, 3, 2, 1].map((l) => entry(0x10_0000, l));
    expect(deviceWrite(m.platform, SID_A, 0x10_0000, new Uint8Array(4)).ok).toBe(true);
    expect(deviceRead(m.platform, SID_A, 0x10_1000).ok).toBe(true);
    expect([4, 3, 2, 1].map((l) => entry(0x10_0000, l))).toEqual(before);
  });
});

describe("a device with a device-TLB (context DTE, ECAP.DT)", () => {
  it("unmaps also invalidate the endpoint's device-TLB", () => {
    const m = scalableMachine({ deviceIotlb: true }, { stage: "second" });
    const d = m.driver.createDomain();
    m.driver.attach(SID_A, d, { deviceTlb: true });
    const iova = m.driver.mapBuffer(d, PHYS, PAGE, "r");
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(true);
    const mark = m.issued.length;
    m.driver.unmapBuffer(d, iova, PAGE);
    expect(since(m, mark)).toEqual([`iotlb-page did ${d.did} addr 0x${iova.toString(16)} am 0`, "device-tlb sid 0x20"]);
    expect(deviceRead(m.platform, SID_A, iova).ok).toBe(false);
  });
});

function readQword(m: ScalableMachine, at: number): bigint {
  const bytes = new Uint8Array(8);
  m.platform.ram.read(BigInt(at), bytes);
  return new DataView(bytes.buffer).getBigUint64(0, true);
}
