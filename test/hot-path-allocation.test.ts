/**
 * The unit's hot paths allocate nothing (issue 16): counted as young-generation collections
 * (scavenges) while a path runs a million times. 1,000,000 requests allocating even 16 bytes each
 * fill V8's young generation (at most 16 MiB per semi-space in Node 20 on 64-bit) several times,
 * so they cannot pass without a scavenge; a control that allocates one small object per
 * operation shows the method sees it. (A heap-growth check is flaky; a collection count is not.)
 */
import { scavengesDuring as scavengesOver } from "./support/scavenges.ts";
import { describe, expect, it } from "vitest";
import { desc, Queue } from "./support/queue.ts";
import { enableTranslation, machine, R, W } from "./support/tables.ts";

const N = 1_000_000;
const scavengesDuring = (run: (n: number) => void) => scavengesOver(run, N);


const SID = 0x20;
/**
 * Below 2^31: V8 passes such a number between functions as a small integer. An address above
 * boxes a double (16 bytes) at each call V8 does not inline (the caller's into dmaRead at least):
 * the calling convention's cost, not an object of ours; with IOVA 2^32 this test sees 2 scavenges
 * per million 8-byte DMAs.
 */
const IOVA = 0x1000_0000;

function translatingUnit(iotlbEntries: number) {
  const m = machine({ awBits: 48, iotlbEntries, cachingMode: true }, 64 << 20);
  const root = m.tables.context(SID, { did: 1, aw: 2 });
  for (let p = 0; p < 1024; p++) m.tables.map(root, 4, IOVA + p * 4096, 0x100_0000 + p * 4096, R | W);
  enableTranslation(m);
  return m;
}

describe("hot paths allocate nothing (young-generation collections over 1,000,000 operations)", () => {
  it("the method sees an allocation: one small object per operation", async () => {
    const kept: { i: number }[] = [{ i: 0 }];
    expect(await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) kept[0] = { i };
    })).toBeGreaterThan(0);
  });

  it("8-byte DMA, IOTLB hit", async () => {
    const m = translatingUnit(4096);
    const bytes = new Uint8Array(8);
    let ok = 0;
    const scavenges = await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) ok += m.device.dmaRead(SID, IOVA + (i % 1024) * 4096, bytes).ok ? 1 : 0;
    });
    expect(ok).toBe(N + N / 10);
    expect(scavenges).toBe(0);
  });

  it("8-byte DMA, IOTLB miss: the slow path walks four levels each time", async () => {
    const m = translatingUnit(16);
    const bytes = new Uint8Array(8);
    const before = m.device.stats.iotlbMisses;
    const scavenges = await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) m.device.dmaWrite(SID, IOVA + ((i * 67) % 1024) * 4096, bytes);
    });
    expect(m.device.stats.iotlbMisses - before).toBeGreaterThan(N);
    expect(scavenges).toBe(0);
  });

  it("queued page-selective invalidations, the IOTLB holding entries of the domain", async () => {
    const m = translatingUnit(4096);
    for (let p = 0; p < 1024; p++) m.device.dmaRead(SID, IOVA + p * 4096, new Uint8Array(1));
    const queue = new Queue(m, 0x200_0000, 7).enable();
    queue.fillRing((i) => desc.iotlbPage(1, BigInt((i % 4096) * 4096))); // pages not cached: nothing dropped
    const before = m.device.stats.descriptorsProcessed;
    const scavenges = await scavengesDuring((n) => queue.advance(n));
    expect(m.device.stats.descriptorsProcessed - before).toBe(N + N / 10);
    expect(m.device.cacheOccupancy.iotlbEntries).toBeGreaterThan(900);
    expect(scavenges).toBe(0);
  });
});
