/**
 * Scalable mode's request path allocates nothing: young-generation collections counted while a
 * million requests run, as test/hot-path-allocation.test.ts does for legacy mode (see there for
 * why a collection count is the measure). Requests with a PASID reuse one options object, as a
 * device model would.
 */
import { scavengesDuring as scavengesOver } from "../../../test/support/scavenges.ts";
import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { FirstStagePte as Fs, PasidGranularTranslationType as Pgtt } from "../../spec/scalable.ts";
import { R, W } from "../../../test/support/tables.ts";
import { ScalableTables, enableScalable } from "../../../test/support/scalable-tables.ts";

const N = 1_000_000;
const scavengesDuring = (run: (n: number) => void) => scavengesOver(run, N);
const SID = 0x20;
const IOVA = 0x1000_0000;
const PAGES = 4096;


function scalableUnit(pgtt: Pgtt) {
  const ram = new GuestRam(64 << 20);
  const device = new VtdDevice({ memory: ram, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 8 });
  const tables = new ScalableTables(ram);
  const dir = tables.smContext(SID, { pasidEnable: true, ridPasid: 1 });
  const fs = tables.page();
  const ss = tables.pasidEntry(dir, 1, { pgtt, aw: 2, did: 2, firstStageRoot: fs });
  for (let p = 0; p < PAGES; p++) {
    if (pgtt === Pgtt.SecondStage) tables.map(ss, 4, IOVA + p * 4096, 0x100_0000 + (p % 1024) * 4096, R | W);
    else tables.mapFirstStage(fs, IOVA + p * 4096, 0x100_0000 + (p % 1024) * 4096, BigInt(Fs.RW | Fs.US));
  }
  enableScalable({ ram, device, tables, interrupts: [] }, tables.root);
  return device;
}

describe("scalable mode's request path allocates nothing (young-generation collections over 1,000,000 requests)", () => {
  it("second stage, requests with a PASID, PASID cache and scalable IOTLB hits", async () => {
    const device = scalableUnit(Pgtt.SecondStage);
    const bytes = new Uint8Array(8);
    const options = { pasid: 1 };
    let ok = 0;
    const scavenges = await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) ok += device.dmaRead(SID, IOVA + (i % 512) * 4096, bytes, options).ok ? 1 : 0;
    });
    expect(ok).toBe(N + N / 10);
    expect(scavenges).toBe(0);
  });

  it("first stage, requests without PASID (RID_PASID), scalable IOTLB misses: a 4-level walk with A/D checks each time", async () => {
    const device = scalableUnit(Pgtt.FirstStage);
    const bytes = new Uint8Array(8);
    let ok = 0;
    const scavenges = await scavengesDuring((n) => {
      for (let i = 0; i < n; i++) ok += device.dmaWrite(SID, IOVA + ((i * 67) % PAGES) * 4096, bytes).ok ? 1 : 0;
    });
    expect(ok).toBe(N + N / 10);
    expect(scavenges).toBe(0);
  });
});
