/**
 * A guest that skips an invalidation in scalable mode leaves the assigned device with the stale
 * view the hardware would have, in each model:
 * - second stage (MAP/UNMAP shadow, CM = 1): a removed page stays mapped until the invalidation, as
 *   it stays in the unit's IOTLB once used; a new page is missing until the invalidation, as CM = 1
 *   lets hardware cache the not-present entry (VT-d 5.10 §6.1): software must invalidate it;
 * - first stage (nested hwpt): a removed page the device used stays in the host IOTLB until the
 *   PASID-based IOTLB invalidation, as in the unit's own IOTLB (a write walks again and faults in
 *   both); a new page is reachable at once, as first-stage translation caches no not-present entry
 *   (the non-CM rules); a PASID entry moved to another table is not seen until the PASID-cache
 *   invalidation, as the unit's PASID cache keeps the old entry.
 * Where the unit's own DMA (the emulated device on the same requester id) can be compared, it is.
 */
import { describe, expect, it } from "vitest";
import { PasidGranularTranslationType as Pgtt } from "../spec/scalable.ts";
import { R, W } from "../../test/support/tables.ts";
import { enableScalableQueued, scalableRig, wide } from "../../test/support/scalable-notifier-rig.ts";
import { assignDevice } from "./vfio.ts";

const SID = 0x30, DID = 2;
const A = 0x90_0000, B = 0x91_0000;

function rigWith(stage: "first" | "second") {
  const rig = scalableRig();
  const t = rig.tables;
  const dir = t.smContext(SID, { ridPasid: 0 });
  const root = t.page();
  if (stage === "second") t.pasidEntry(dir, 0, { pgtt: Pgtt.SecondStage, aw: 2, did: DID, secondStageRoot: root });
  else t.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, did: DID, firstStageRoot: root });
  rig.ram.write32(A, 0xaaaa_0001);
  rig.ram.write32(B, 0xbbbb_0002);
  enableScalableQueued(rig);
  const vfio = assignDevice(rig.device, SID);
  const bytes = new Uint8Array(4);
  /** What the assigned device and the unit's own DMA read at `iova` (the value, or "fault"). */
  const reads = (iova: number) => {
    const host = vfio.device.dmaRead(iova, bytes);
    const hostValue = host.ok ? new DataView(bytes.buffer).getUint32(0, true).toString(16) : "fault";
    const unit = rig.device.dmaRead(SID, iova, bytes);
    const unitValue = unit.ok ? new DataView(bytes.buffer).getUint32(0, true).toString(16) : "fault";
    return { host: hostValue, unit: unitValue };
  };
  const hostWrite = (iova: number) => vfio.device.dmaWrite(iova, bytes).ok;
  return { rig, t, dir, root, vfio, reads, hostWrite };
}

describe("a skipped invalidation in scalable mode: the assigned device keeps the hardware's stale view", () => {
  it("second stage: a removed page stays reachable (host shadow and unit IOTLB alike) until the IOTLB invalidation", () => {
    const { rig, t, root, reads, vfio } = rigWith("second");
    t.map(root, 4, 0x1000, A, R | W);
    rig.submit(wide.pasidIotlbPage(DID, 0, 0x1000));
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" });
    rig.ram.write64(t.entryOf(root, 4, 0x1000), 0n);
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" }); // stale in both
    rig.submit(wide.iotlbPage(DID, 0x1000));
    expect(reads(0x1000)).toEqual({ host: "fault", unit: "fault" });
    expect(vfio.hostIommu.count).toBe(0);
  });

  it("second stage: a new page is missing from the shadow until the invalidation (CM = 1: the guest must invalidate not-present to present)", () => {
    const { rig, t, root, reads } = rigWith("second");
    t.map(root, 4, 0x1000, A, R | W);
    expect(reads(0x1000).host).toBe("fault");
    rig.submit(wide.pasidIotlbPage(DID, 0, 0x1000));
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" });
  });

  it("first stage: a removed page the device used stays in the host IOTLB (and the unit's) until the PASID-based IOTLB invalidation; a write walks again and faults in both", () => {
    const { rig, t, root, reads, hostWrite, vfio } = rigWith("first");
    const leaf = t.mapFirstStage(root, 0x1000, A, 0x6n);
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" }); // a new first-stage page needs no invalidation
    rig.ram.write64(leaf, 0n);
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" }); // stale in both IOTLBs
    expect(hostWrite(0x1000)).toBe(false);
    expect(rig.device.dmaWrite(SID, 0x1000, new Uint8Array(4)).ok).toBe(false);
    rig.submit(wide.iotlbPage(DID + 1, 0x1000), wide.pasidIotlbPage(DID, 5, 0x1000)); // another DID, another PASID: still stale
    expect(reads(0x1000).host).toBe("aaaa0001");
    rig.submit(wide.pasidIotlbPage(DID, 0, 0x1000, 0, true));
    expect(reads(0x1000)).toEqual({ host: "fault", unit: "fault" });
    expect(vfio.nestedHwpt!.leafInvalidations).toBe(1);
  });

  it("first stage: a PASID entry moved to another table is not seen until the PASID-cache invalidation (unit PASID cache and host hwpt alike)", () => {
    const { rig, t, dir, root, reads, vfio } = rigWith("first");
    t.mapFirstStage(root, 0x1000, A, 0x6n);
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" });
    const other = t.page();
    t.mapFirstStage(other, 0x2000, B, 0x6n);
    t.pasidEntry(dir, 0, { pgtt: Pgtt.FirstStage, did: DID, firstStageRoot: other });
    rig.submit(wide.pasidIotlbAll(DID, 0));
    expect(reads(0x2000)).toEqual({ host: "fault", unit: "fault" }); // both still walk the old table
    expect(reads(0x1000)).toEqual({ host: "aaaa0001", unit: "aaaa0001" });
    rig.submit(wide.pasidCache(1, DID, 0), wide.pasidIotlbAll(DID, 0));
    expect(reads(0x2000)).toEqual({ host: "bbbb0002", unit: "bbbb0002" });
    expect(reads(0x1000)).toEqual({ host: "fault", unit: "fault" });
    expect(vfio.nestedHwpt!.data?.pgtblAddr).toBe(other);
  });
});
