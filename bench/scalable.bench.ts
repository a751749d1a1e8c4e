/**
 * Scalable-mode figures (issue 17), beside legacy mode's measured in the same run: 8-byte DMA
 * through the scalable IOTLB with the first stage (PGTT 001) and the second stage (PGTT 010), with
 * and without a PASID, against legacy mode's IOTLB hit; 4-level walks on every request against
 * legacy mode's 4-level walk; PASID-based IOTLB invalidation descriptors (page-selective, 256-bit
 * queue) with the scalable IOTLB holding entries of the PASID, against the empty IOTLB. Each figure
 * checks through the unit's counters that it measured what it names. The scalable IOTLB is direct
 * mapped with 1,024 entries (src/vtd-device/scalable/scalable-caches.ts).
 */
import type { BenchReporter } from "./harness.ts";
import { enableTranslation, machine, R, W, type Machine } from "../test/support/tables.ts";
import { desc, Queue } from "../test/support/queue.ts";
import { PasidGranularTranslationType as Pgtt } from "../src/spec/scalable.ts";
import { scalableUnit, SCALABLE_DID, SCALABLE_IOVA, SCALABLE_PASID, SCALABLE_SID, wideDesc, WideQueue } from "../test/support/scalable-workload.ts";

const SID = SCALABLE_SID;
const IOVA = SCALABLE_IOVA;
/** Pages a hit loop cycles through (all cached: the scalable IOTLB holds 1,024). */
const HIT_PAGES = 512;
/** Pages a miss loop strides over: four to each scalable IOTLB slot, so every request walks. */
const MISS_PAGES = 4096;

function legacyUnit(pages: number, iotlbEntries: number): Machine {
  const m = machine({ awBits: 48, iotlbEntries }, 64 << 20);
  const root = m.tables.context(SID, { did: 1, aw: 2 });
  for (let p = 0; p < pages; p++) m.tables.map(root, 4, IOVA + p * 4096, 0x100_0000 + (p % 1024) * 4096, R | W);
  enableTranslation(m);
  return m;
}

export default function run(r: BenchReporter): void {
  const small = new Uint8Array(8);
  const withPasid = { pasid: SCALABLE_PASID };
  let sink = 0;
  /** Runs `fn` as the figure's loop and checks the IOTLB hits and misses it was meant to make. */
  const measured = (m: Machine, expect: "hits" | "misses", fn: (i: number) => boolean, iterations: number) => {
    const before = m.device.stats.iotlbMisses;
    const result = r.measure((n) => {
      for (let i = 0; i < n; i++) sink += fn(i) ? 1 : 0;
    }, iterations);
    const misses = m.device.stats.iotlbMisses - before;
    if (expect === "hits" ? misses > HIT_PAGES : misses < iterations) throw new Error(`scalable bench: a loop meant to make IOTLB ${expect} made ${misses} misses`);
    return result;
  };

  // Hits: legacy mode first (the baseline), then the scalable IOTLB with each stage.
  const legacy = legacyUnit(HIT_PAGES, 4096);
  const legacyHit = measured(legacy, "hits", (i) => legacy.device.dmaRead(SID, IOVA + (i % HIT_PAGES) * 4096, small).ok, 1_000_000);
  r.figure("8-byte DMA read, legacy second-stage IOTLB hit", legacyHit.nsPerOp, "ns");
  const base = { baseline: legacyHit.nsPerOp, baselineName: "legacy IOTLB hit" };
  for (const [name, pgtt] of [["second stage (PGTT 010)", Pgtt.SecondStage], ["first stage (PGTT 001)", Pgtt.FirstStage]] as const) {
    const u = scalableUnit({ pgtt, pages: HIT_PAGES });
    const pasid = measured(u, "hits", (i) => u.device.dmaRead(SID, IOVA + (i % HIT_PAGES) * 4096, small, withPasid).ok, 1_000_000);
    r.figure(`8-byte DMA read, scalable ${name} IOTLB hit, request with PASID`, pasid.nsPerOp, "ns", base);
    const rid = measured(u, "hits", (i) => u.device.dmaRead(SID, IOVA + (i % HIT_PAGES) * 4096, small).ok, 1_000_000);
    r.figure(`8-byte DMA read, scalable ${name} IOTLB hit, request without PASID (RID_PASID)`, rid.nsPerOp, "ns", base);
  }

  // Misses: a walk of four levels on every request (the PASID entry itself stays cached).
  const legacyMissing = legacyUnit(1024, 16);
  const legacyMiss = measured(legacyMissing, "misses", (i) => legacyMissing.device.dmaRead(SID, IOVA + ((i * 67) % 1024) * 4096, small).ok, 300_000);
  r.figure("8-byte DMA read, legacy second-stage 4-level walk (IOTLB miss)", legacyMiss.nsPerOp, "ns", base);
  const missBase = { baseline: legacyMiss.nsPerOp, baselineName: "legacy 4-level walk" };
  for (const [name, pgtt] of [["second-stage", Pgtt.SecondStage], ["first-stage", Pgtt.FirstStage]] as const) {
    const u = scalableUnit({ pgtt, pages: MISS_PAGES });
    const miss = measured(u, "misses", (i) => u.device.dmaRead(SID, IOVA + ((i * 67) % MISS_PAGES) * 4096, small, withPasid).ok, 300_000);
    r.figure(`8-byte DMA read, scalable ${name} 4-level walk (IOTLB miss), request with PASID`, miss.nsPerOp, "ns", missBase);
  }

  // PASID-based IOTLB invalidation, page-selective: each descriptor names a page of the PASID that
  // is not cached (pages from 16 MiB on), so nothing is dropped and each unit stays as named.
  const COUNT = 100_000;
  const piotlbUnit = (populate: boolean) => {
    const u = scalableUnit({ pgtt: Pgtt.FirstStage, pages: 1024 });
    if (populate) for (let p = 0; p < 1024; p++) u.device.dmaRead(SID, IOVA + p * 4096, small, withPasid);
    const q = new WideQueue(u).enable();
    q.fillRing((i) => wideDesc.pasidIotlbPage(SCALABLE_DID, SCALABLE_PASID, BigInt(0x100_0000 + (i % 4096) * 4096)));
    return { u, q };
  };
  const stillCached = (u: Machine) => {
    const before = u.device.stats.iotlbMisses;
    for (let p = 0; p < 1024; p++) u.device.dmaRead(SID, IOVA + p * 4096, small, withPasid);
    return 1024 - (u.device.stats.iotlbMisses - before);
  };
  // Legacy mode's page-selective IOTLB descriptor on an empty IOTLB, as device.bench.ts measures it.
  const legacyQueued = legacyUnit(1024, 4096);
  const legacyQueue = new Queue(legacyQueued, 0x200_0000, 7).enable();
  legacyQueue.fillRing((i) => desc.iotlbPage(1, BigInt(0x100_0000 + (i % 4096) * 4096)));
  const legacyRate = r.measure((n) => legacyQueue.advance(n), COUNT, 5);
  r.figure("legacy page-selective IOTLB descriptors processed, empty IOTLB", legacyRate.opsPerSecond / 1e6, "M/s");
  const empty = piotlbUnit(false);
  const emptyRate = r.measure((n) => empty.q.advance(n), COUNT, 5);
  r.figure("PASID-based IOTLB descriptors (page-selective) processed, empty IOTLB", emptyRate.opsPerSecond / 1e6, "M/s", {
    baseline: legacyRate.opsPerSecond / 1e6, baselineName: "legacy page-selective, empty IOTLB",
  });
  const full = piotlbUnit(true);
  const fullRate = r.measure((n) => full.q.advance(n), COUNT, 5);
  const held = stillCached(full.u);
  if (held < 1000) throw new Error(`scalable bench: the populated IOTLB lost entries under the benchmark (${held} of 1024 left)`);
  r.figure(`PASID-based IOTLB descriptors (page-selective) processed, IOTLB holding ${held} entries of the PASID`, fullRate.opsPerSecond / 1e6, "M/s", {
    baseline: emptyRate.opsPerSecond / 1e6, baselineName: "empty IOTLB",
  });
  if (sink === 42) console.log("");
}
