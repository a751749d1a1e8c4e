/**
 * Problems a review of issue L's work found, each with a test that failed before its fix:
 * re-entry of the queue from an interrupt handler, QIE set again during a pending disable,
 * snapshots that widen a cached context entry or hold impossible cached addresses, bus errors
 * cached as negative entries, and per-domain IOTLB counts past 65,535.
 */
import { describe, expect, it } from "vitest";
import { FaultReason } from "./index.ts";
import { Gcmd, Gsts, Reg } from "../spec/registers.ts";
import { Iotlb } from "./caches/iotlb.ts";
import { crc32 } from "./state/codec.ts";
import { enableTranslation, machine, R, W } from "../../test/support/tables.ts";
import { desc, Queue } from "../../test/support/queue.ts";

const SID = 0x18;

describe("the invalidation queue and host callbacks", () => {
  it("an onInterrupt that writes the tail while a wait descriptor signals does not run the queue twice", () => {
    let q: Queue | undefined;
    let reentered = 0;
    const m = machine({
      onInterrupt: () => {
        if (reentered++ === 0) q!.submit(desc.iotlbGlobal());
      },
    });
    q = new Queue(m).enable();
    m.device.writeRegister(Reg.IECTL, 4, 0n); // completion event unmasked
    q.submit(desc.wait({ if: true }), desc.iotlbGlobal());
    expect(m.device.stats.invalidationWaits).toBe(1);
    expect(m.device.readRegister(Reg.FSTS, 4)).toBe(0n); // no IQE
    expect(q.head).toBe(q.tail);
    expect(m.device.stats.descriptorsProcessed).toBe(3);
  });

  it("QIE set again while a disable waits for the queue keeps the queue enabled", () => {
    const m = machine({ queueWorkBudget: 2 });
    const q = new Queue(m).enable();
    q.submit(...Array.from({ length: 6 }, () => desc.iotlbGlobal()));
    expect(q.head).toBe(2); // paused at the budget
    const others = m.device.readRegister(Reg.GSTS, 4) & ~Gsts.QIES & 0x96ff_ffffn;
    m.device.writeRegister(Reg.GCMD, 4, others); // QIE = 0: waits for idle
    m.device.writeRegister(Reg.GCMD, 4, others | Gcmd.QIE); // QIE = 1 again
    for (let i = 0; i < 5; i++) m.device.advanceTime(1);
    expect(q.head).toBe(6);
    expect(m.device.readRegister(Reg.GSTS, 4) & Gsts.QIES).toBe(Gsts.QIES);
  });
});

describe("snapshots cannot widen or corrupt the caches", () => {
  function populated() {
    const m = machine();
    const root = m.tables.context(SID, { did: 1 });
    m.tables.map(root, 3, 0x1000, 0x20_0000, R | W);
    enableTranslation(m);
    expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4)).ok).toBe(true);
    return m;
  }
  function tampered(m: ReturnType<typeof machine>, change: (s: Record<string, any>) => void): string {
    const s = m.device.saveState() as unknown as Record<string, any>;
    change(s);
    const { checksum: _, ...body } = s;
    return JSON.stringify({ ...body, checksum: crc32(JSON.stringify(body)) });
  }

  it("a cached context entry's input limits are rebuilt from its fields, not trusted", () => {
    const m = populated();
    const text = tampered(m, (s) => {
      const slot = s.contextCache.tag.findIndex((t: number) => t === SID + 1);
      s.contextCache.inputLimit[slot] = 2 ** 64;
      s.contextCache.fastInputLimit[slot] = 2 ** 64;
    });
    m.device.restoreState(text);
    expect(m.device.dmaRead(SID, 2 ** 48 + 0x1000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.AddressBeyondMgaw });
  });

  it("a negative context entry with a domain, an unsupported AW or an unaligned table root is refused", () => {
    const m = populated();
    const slotOf = (s: Record<string, any>) => s.contextCache.tag.findIndex((t: number) => t === SID + 1);
    expect(() => m.device.restoreState(tampered(m, (s) => { s.contextCache.reason[slotOf(s)] = 2; }))).toThrow(/negative entry is tagged with domain 0/);
    expect(() => m.device.restoreState(tampered(m, (s) => { s.contextCache.aw[slotOf(s)] = 3; }))).toThrow(/AW 3 is not supported/);
    expect(() => m.device.restoreState(tampered(m, (s) => { s.contextCache.tableRoot[slotOf(s)] += 8; }))).toThrow(/table root .* 4 KiB-aligned/);
    expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4)).ok).toBe(true); // untouched
  });

  it("an IOTLB output that is not an aligned address below 2^HAW is refused", () => {
    const m = populated();
    const text = tampered(m, (s) => {
      const e: number[] = s.iotlb.entries;
      const at = e.findIndex((key, i) => i % 4 === 0 && key !== 0);
      e[at + 2] = 0x20_0000 + 0.5;
    });
    expect(() => m.device.restoreState(text)).toThrow(/output .* is no address/);
  });
});

describe("caches", () => {
  it("a table the unit could not read is not cached as a negative entry under CM", () => {
    const m = machine({ cachingMode: true }, 4 << 20);
    // The second-level table lies outside RAM: LSS.1 (0x7), a bus error.
    const root = m.tables.context(SID, { did: 1 });
    m.ram.write64(root, BigInt(0x1_0000_0000) | 3n);
    enableTranslation(m);
    expect(m.device.dmaRead(SID, 0x1000, new Uint8Array(4))).toEqual({ ok: false, reason: FaultReason.PagingEntryReadError });
    expect(m.device.cacheOccupancy.iotlbEntries).toBe(0);
  });

  it("a domain with 65,536 cached entries is still invalidated", () => {
    const tlb = new Iotlb(1 << 20);
    for (let page = 0; page < 65_536; page++) tlb.insert(1, 1, page * 4096, page * 4096, 3, 0);
    expect(tlb.invalidatePages(1, 0, 0)).toBe(1);
    expect(tlb.invalidateDomain(1)).toBe(65_535);
    expect(tlb.lookup(1, 0x2000)).toBe(false);
  });
});
