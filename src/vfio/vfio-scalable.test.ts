/**
 * Device assignment in scalable mode, in both models: the MAP/UNMAP shadow of second-stage PASID
 * entries and the nested model (iommufd) for first-stage ones. A seeded guest maps, unmaps and
 * remaps pages, sometimes moves a PASID entry to a new table, and invalidates page-selectively,
 * PASID-selectively, by domain or globally; after every invalidation the assigned devices (one for
 * requests without PASID, one for a PASID) reach exactly what a reference walk of the guest's
 * tables gives: the right data where mapped, writes only where writable, faults elsewhere.
 */
import { describe, expect, it } from "vitest";
import { PasidGranularTranslationType as Pgtt } from "../spec/scalable.ts";
import { R, W } from "../../test/support/tables.ts";
import { referenceLookup } from "../../test/support/reference-mappings.ts";
import { enableScalableQueued, referenceView, scalableRig, wide, type ScalableRig, type Wide } from "../../test/support/scalable-notifier-rig.ts";
import { assignDevice, type VfioAssignment } from "./vfio.ts";
import { mulberry32 as random } from "../../test/support/vfio-workload.ts";

const SID = 0x28, RID_PASID = 0, PASID = 0x42;
const DATA = 0x80_0000, DATA_PAGES = 48;
/** IOVAs the guest uses: three clusters, so tables at every level are shared and split. */
const IOVAS = [...Array.from({ length: 24 }, (_, i) => 0x1000 * (i + 1)), ...Array.from({ length: 12 }, (_, i) => 0x4000_0000 + 0x20_0000 * i), ...Array.from({ length: 12 }, (_, i) => 2 ** 39 + 0x1000 * i * 7)];

type Stage = "second-stage" | "first-stage";

/** One PASID entry's guest-side state: its table and the mappings the guest means. */
interface GuestSpace {
  pasid: number;
  did: number;
  root: number;
  mapped: Map<number, { output: number; perm: bigint }>;
}

function setup(stage: Stage) {
  const rig = scalableRig();
  const t = rig.tables;
  const dir = t.smContext(SID, { pasidEnable: true, ridPasid: RID_PASID });
  for (let p = 0; p < DATA_PAGES; p++) for (let i = 0; i < 4096; i += 4) rig.ram.write32(DATA + p * 4096 + i, (p * 0x1_0001 + i) >>> 0);
  const spaces: GuestSpace[] = [{ pasid: RID_PASID, did: 3, root: 0, mapped: new Map() }, { pasid: PASID, did: 4, root: 0, mapped: new Map() }];
  const writeEntry = (s: GuestSpace) => {
    s.root = t.page();
    if (stage === "second-stage") t.pasidEntry(dir, s.pasid, { pgtt: Pgtt.SecondStage, aw: 2, did: s.did, secondStageRoot: s.root });
    else t.pasidEntry(dir, s.pasid, { pgtt: Pgtt.FirstStage, did: s.did, firstStageRoot: s.root });
  };
  const writeLeaf = (s: GuestSpace, iova: number) => {
    const m = s.mapped.get(iova);
    if (stage === "second-stage") {
      if (m) t.map(s.root, 4, iova, m.output, m.perm);
      else rig.ram.write64(t.entryOf(s.root, 4, iova), 0n);
    } else {
      // First stage: U/S set (user requests), R/W as meant; removal clears the leaf.
      if (m) t.mapFirstStage(s.root, iova, m.output, 0x4n | (m.perm & W ? 0x2n : 0n));
      else rig.ram.write64(firstStageLeaf(rig, s.root, iova), 0n);
    }
  };
  for (const s of spaces) writeEntry(s);
  enableScalableQueued(rig);
  const devices = [assignDevice(rig.device, SID), assignDevice(rig.device, SID, { pasid: PASID })];
  return { rig, spaces, devices, writeEntry, writeLeaf };
}

/** The leaf entry of `iova` in a 4-level first-stage table (tables present down to level 1). */
function firstStageLeaf(rig: ScalableRig, root: number, iova: number): number {
  let table = root;
  for (let level = 4; level > 1; level--) {
    table = Number(rig.ram.read64(table + (Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512) * 8) & 0x000f_ffff_ffff_f000n);
  }
  return table + (Math.floor(iova / 4096) % 512) * 8;
}

/** Every IOVA the guest uses, through the assigned device, against the reference walk of the guest's tables. */
function expectDeviceSeesGuest(rig: ScalableRig, vfio: VfioAssignment, pasid: number, stage: Stage, step: string): void {
  const view = referenceView(rig.ram, rig.tables.root, SID, pasid < 0 ? -1 : pasid);
  expect(view.kind).toBe(stage);
  if (stage === "second-stage") {
    expect(vfio.hostIommu.mappings().map((h) => ({ iova: h.iova, size: h.size, output: h.hostAddress, permission: h.permission })), step).toEqual(view.mappings);
  }
  const seen: string[] = [], want: string[] = [];
  const bytes = new Uint8Array(8);
  for (const iova of IOVAS) {
    for (const offset of [0, 0xff8]) {
      const ref = referenceLookup(view.mappings, iova + offset);
      const expected = ref ? rig.ram.read64(ref.output + (iova + offset - ref.iova)) : undefined;
      want.push(`${(iova + offset).toString(16)}: ${ref ? `read ${expected!.toString(16)} write ${(ref.permission & 2) !== 0}` : "fault"}`);
      const read = vfio.device.dmaRead(iova + offset, bytes);
      if (!read.ok) {
        seen.push(`${(iova + offset).toString(16)}: fault`);
        continue;
      }
      const value = new DataView(bytes.buffer).getBigUint64(0, true);
      // The same bytes written back: a write changes nothing where it is allowed.
      const write = vfio.device.dmaWrite(iova + offset, bytes);
      seen.push(`${(iova + offset).toString(16)}: read ${value.toString(16)} write ${write.ok}`);
    }
  }
  expect(seen, step).toEqual(want);
}

function workload(stage: Stage, seed: number, steps: number) {
  const { rig, spaces, devices, writeEntry, writeLeaf } = setup(stage);
  const rnd = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
  const counts = { page: 0, pasid: 0, domain: 0, global: 0, moved: 0 };
  for (let step = 0; step < steps; step++) {
    const s = pick(spaces);
    const changed: number[] = [];
    let moved = false;
    if (rnd() < 0.04 && counts.moved < 8) {
      // The guest moves the PASID entry to a new table holding the same mappings.
      writeEntry(s);
      for (const iova of s.mapped.keys()) writeLeaf(s, iova);
      moved = true;
      counts.moved++;
    } else {
      for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
        const iova = pick(IOVAS);
        if (s.mapped.has(iova) && rnd() < 0.5) s.mapped.delete(iova);
        else s.mapped.set(iova, { output: DATA + 4096 * Math.floor(rnd() * DATA_PAGES), perm: rnd() < 0.3 ? R : R | W });
        writeLeaf(s, iova);
        changed.push(iova);
      }
    }
    const descriptors: Wide[] = [];
    const kind = moved ? "pasid" : pick(["page", "page", "page", "pasid", "domain", "global"] as const);
    if (moved) descriptors.push(wide.pasidCache(1, s.did, s.pasid), wide.pasidIotlbAll(s.did, s.pasid));
    else if (kind === "page") {
      for (const iova of changed) descriptors.push(stage === "second-stage" && rnd() < 0.5 ? wide.iotlbPage(s.did, iova) : wide.pasidIotlbPage(s.did, s.pasid, iova, 0, rnd() < 0.5));
    } else if (kind === "pasid") descriptors.push(wide.pasidIotlbAll(s.did, s.pasid));
    else if (kind === "domain") descriptors.push(wide.iotlbDomain(s.did));
    else descriptors.push(wide.iotlbGlobal());
    counts[kind]++;
    rig.submit(...descriptors);
    for (let i = 0; i < spaces.length; i++) expectDeviceSeesGuest(rig, devices[i]!, spaces[i]!.pasid, stage, `step ${step} (${kind}) ${i === 0 ? "RID_PASID" : "PASID"}`);
  }
  return { rig, devices, counts };
}

describe("device assignment in scalable mode: the assigned devices see exactly the guest's mappings after every invalidation", () => {
  it("second stage, MAP/UNMAP shadow: 160 seeded steps, requests without PASID (RID_PASID) and with a PASID", () => {
    const { rig, devices, counts } = workload("second-stage", 0x5eed, 160);
    expect(Object.values(counts).every((n) => n > 0)).toBe(true);
    for (const d of devices) expect(d.nestedHwpt!.allocCalls).toBe(0);
    expect(devices[0]!.events.map + devices[1]!.events.map).toBeGreaterThan(100);
    expect(rig.device.notifiers.stats.pasidEntrySyncs).toBe(counts.moved);
  });

  it("first stage, nested hwpt: 160 seeded steps; each PASID-cache invalidation of a moved entry attaches its new table, nothing is shadowed", () => {
    const { rig, devices, counts } = workload("first-stage", 0xf1a5, 160);
    expect(Object.values(counts).every((n) => n > 0)).toBe(true);
    expect(devices[0]!.hostIommu.count + devices[1]!.hostIommu.count).toBe(0);
    expect(devices[0]!.nestedHwpt!.allocCalls + devices[1]!.nestedHwpt!.allocCalls).toBe(2 + counts.moved);
    for (const d of devices) {
      expect(d.nestedHwpt!.invalidateCalls).toBeGreaterThan(20);
      expect(d.nestedHwpt!.iotlbHits).toBeGreaterThan(100);
    }
    expect(rig.device.notifiers.stats.mapEvents).toBe(0);
  });
});
