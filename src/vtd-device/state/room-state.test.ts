/** Room-level save/load: state a workload rarely reaches (round-robin victims of full sets) survives a round trip. */
import { describe, expect, it } from "vitest";
import { DeviceTlbs } from "../caches/device-tlb.ts";
import { Iotlb } from "../caches/iotlb.ts";
import { Section } from "./codec.ts";

function section(value: unknown): Section {
  return Section.of({ room: JSON.parse(JSON.stringify(value)) }, "room");
}

describe("room state round trips", () => {
  it("device-TLBs: a restored full set evicts the same victim as the original", () => {
    const a = new DeviceTlbs(4, 4);
    for (let sid = 1; sid <= 5; sid++) a.fill(sid, 0x1000 * sid, 0x10_0000 * sid, 3); // the fifth evicts way 0
    const b = new DeviceTlbs(4, 4);
    const saved = a.save();
    b.load(b.decode(section(saved), saved));
    expect(b.save()).toEqual(saved);
    a.fill(9, 0x9000, 0x90_0000, 1);
    b.fill(9, 0x9000, 0x90_0000, 1);
    expect(b.save()).toEqual(a.save());
    for (let sid = 1; sid <= 9; sid++) expect(b.entries(sid)).toBe(a.entries(sid));
  });

  it("IOTLB: a restored full set evicts the same victim as the original, and counts are rebuilt", () => {
    const a = new Iotlb(4);
    for (let p = 0; p < 6; p++) a.insert(1, 1, p * 4096, p * 8192, 3, 0);
    const b = new Iotlb(4);
    b.load(b.decode(section(a.save())));
    expect(b.count).toBe(a.count);
    a.insert(2, 1, 0x7000, 0, 1, 5);
    b.insert(2, 1, 0x7000, 0, 1, 5);
    expect(b.save()).toEqual(a.save());
    expect(b.invalidateDomain(1)).toBe(a.invalidateDomain(1));
  });
});
