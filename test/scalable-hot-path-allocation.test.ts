/**
 * The scalable-mode paths bench/scalable.bench.ts measures allocate nothing: young-generation
 * collections counted over 1,000,000 operations on the same units (test/support/scalable-workload.ts),
 * as test/hot-path-allocation.test.ts does for legacy mode (see there for why a collection count
 * is the measure). Paths src/vtd-device/scalable/scalable-allocation.test.ts covers already
 * (second-stage hits with a PASID, first-stage write misses without) are not repeated.
 */
import { describe, expect, it } from "vitest";
import { scavengesDuring as scavengesOver } from "./support/scavenges.ts";
import { PasidGranularTranslationType as Pgtt } from "../src/spec/scalable.ts";
import { scalableUnit, SCALABLE_DID, SCALABLE_IOVA as IOVA, SCALABLE_PASID, SCALABLE_SID as SID, wideDesc, WideQueue } from "./support/scalable-workload.ts";

const N = 1_000_000;
const scavengesDuring = (run: (n: number) => void) => scavengesOver(run, N);
const withPasid = { pasid: SCALABLE_PASID };

describe("scalable mode's measured paths allocate nothing (young-generation collections over 1,000,000 operations)", () => {
  it("the method sees an allocation: one small object per request's options", async () => {
    const u = scalableUnit({ pgtt: Pgtt.FirstStage, pages: 512 });
    const bytes = new Uint8Array(8);
    expect(await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) u.device.dmaRead(SID, IOVA + (i % 512) * 4096, bytes, { pasid: SCALABLE_PASID });
    })).toBeGreaterThan(0);
  });

  for (const [name, options] of [["with a PASID", withPasid], ["without PASID (RID_PASID)", undefined]] as const) {
    it(`first-stage IOTLB hits, requests ${name}`, async () => {
      const u = scalableUnit({ pgtt: Pgtt.FirstStage, pages: 512 });
      const bytes = new Uint8Array(8);
      let ok = 0;
      const scavenges = await scavengesDuring((n) => {
        for (let i = 0; i < n; i++) ok += u.device.dmaRead(SID, IOVA + (i % 512) * 4096, bytes, options).ok ? 1 : 0;
      });
      expect(ok).toBe(N + N / 10);
      expect(u.device.stats.iotlbMisses).toBe(512);
      expect(scavenges).toBe(0);
    });
  }

  for (const pgtt of [Pgtt.FirstStage, Pgtt.SecondStage] as const) {
    it(`${pgtt === Pgtt.FirstStage ? "first" : "second"}-stage reads with a PASID that miss the scalable IOTLB: a 4-level walk each`, async () => {
      const u = scalableUnit({ pgtt, pages: 4096 });
      const bytes = new Uint8Array(8);
      let ok = 0;
      const scavenges = await scavengesDuring((n) => {
        for (let i = 0; i < n; i++) ok += u.device.dmaRead(SID, IOVA + ((i * 67) % 4096) * 4096, bytes, withPasid).ok ? 1 : 0;
      });
      expect(ok).toBe(N + N / 10);
      expect(u.device.stats.iotlbMisses).toBeGreaterThan(N); // a few hits where the measured loop restarts the warm-up's stride
      expect(scavenges).toBe(0);
    });
  }

  it("PASID-based IOTLB page-selective descriptors, the scalable IOTLB holding 1,024 entries of the PASID", async () => {
    const u = scalableUnit({ pgtt: Pgtt.FirstStage, pages: 1024 });
    const bytes = new Uint8Array(8);
    for (let p = 0; p < 1024; p++) u.device.dmaRead(SID, IOVA + p * 4096, bytes, withPasid);
    const q = new WideQueue(u).enable();
    q.fillRing((i) => wideDesc.pasidIotlbPage(SCALABLE_DID, SCALABLE_PASID, BigInt(0x100_0000 + (i % 4096) * 4096)));
    const before = u.device.stats.descriptorsProcessed;
    const scavenges = await scavengesDuring((n) => q.advance(n));
    expect(u.device.stats.descriptorsProcessed - before).toBe(N + N / 10);
    const misses = u.device.stats.iotlbMisses;
    for (let p = 0; p < 1024; p++) u.device.dmaRead(SID, IOVA + p * 4096, bytes, withPasid);
    expect(u.device.stats.iotlbMisses).toBe(misses); // every entry still cached: nothing was dropped
    expect(scavenges).toBe(0);
  });
});
