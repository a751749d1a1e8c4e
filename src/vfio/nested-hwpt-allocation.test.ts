/**
 * The assigned device's DMA through a nested hwpt allocates nothing: young-generation collections
 * counted over 1,000,000 transfers (test/support/scavenges.ts), host IOTLB hits and misses (each
 * miss a 4-level first-stage walk with A/D updates), as the unit's own request path.
 */
import { describe, expect, it } from "vitest";
import { PasidGranularTranslationType as Pgtt } from "../spec/scalable.ts";
import { scavengesDuring } from "../../test/support/scavenges.ts";
import { enableScalableQueued, scalableRig } from "../../test/support/scalable-notifier-rig.ts";
import { HOST_IOTLB_ENTRIES } from "./nested-hwpt.ts";
import { assignDevice } from "./vfio.ts";

const SID = 0x20, IOVA = 0x1000_0000, PAGES = 4 * HOST_IOTLB_ENTRIES, N = 1_000_000;

describe("the nested hwpt's translation allocates nothing", () => {
  it("1,000,000 writes through the guest's first-stage table: host IOTLB hits and 4-level misses", async () => {
    const rig = scalableRig();
    const t = rig.tables;
    const dir = t.smContext(SID, { ridPasid: 1 });
    const fs = t.page();
    t.pasidEntry(dir, 1, { pgtt: Pgtt.FirstStage, did: 2, firstStageRoot: fs });
    for (let p = 0; p < PAGES; p++) t.mapFirstStage(fs, IOVA + p * 4096, 0x100_0000 + (p % 1024) * 4096, 0x6n);
    enableScalableQueued(rig);
    const vfio = assignDevice(rig.device, SID);
    const bytes = new Uint8Array(8);
    let ok = 0;
    const scavenges = await scavengesDuring((n) => {
      // Half the writes reuse a small set of pages (hits), half stride over four times the IOTLB (misses).
      for (let i = 0; i < n; i++) ok += vfio.device.dmaWrite(IOVA + (i & 1 ? (i % 64) : (i * 67) % PAGES) * 4096, bytes).ok ? 1 : 0;
    }, N);
    expect(ok).toBe(N + N / 10);
    expect(scavenges).toBe(0);
    expect(vfio.nestedHwpt!.iotlbHits).toBeGreaterThan(N / 4);
    expect(vfio.nestedHwpt!.walks).toBeGreaterThan(N / 4);
  });
});
