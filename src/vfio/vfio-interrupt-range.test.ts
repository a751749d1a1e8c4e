/**
 * The shadow and the interrupt range 0xFEE0_0000..0xFEEF_FFFF (VT-d §3.14): where the unit faults
 * a DMA with 0xE, the assigned device must not reach memory either. A mapping whose output is in
 * the range is not mirrored; a superpage reaching into it is mirrored only outside it, as the
 * unit clips; with TE off (the unit does not translate) the identity mapping is mirrored whole.
 */
import { describe, expect, it } from "vitest";
import { Gcmd, Reg } from "../spec/registers.ts";
import { FaultReason } from "../spec/fault-reasons.ts";
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT } from "../spec/entries.ts";
import { enableTranslation, machine, R, W } from "../../test/support/tables.ts";
import { contextGlobal, G1, K4, M2, psi, SID } from "../../test/support/notifier-rig.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { assignDevice } from "./vfio.ts";
import { blocksOutsideInterruptRange } from "./interrupt-range.ts";

/** 8 GiB of guest-physical space that accepts every access and remembers where writes landed. */
class RecordingMemory implements GuestMemory {
  readonly size = 2 ** 33;
  readonly writes: number[] = [];
  read(_address: bigint, into: Uint8Array): boolean {
    into.fill(0xa5);
    return true;
  }
  write(address: bigint, _data: Uint8Array): boolean {
    this.writes.push(Number(address));
    return true;
  }
}

const inRange = (address: number) => address >= INTERRUPT_RANGE_BASE && address <= INTERRUPT_RANGE_LIMIT;

function setup(tt = 0) {
  const m = machine({ awBits: 48, cachingMode: true });
  const root = m.tables.context(SID, { did: 1, aw: 2, tt });
  enableTranslation(m);
  const memory = new RecordingMemory();
  const vfio = assignDevice(m.device, SID, { memory });
  return { m, root, memory, vfio };
}

describe("the VFIO shadow and the interrupt range", () => {
  it("a 4 KiB page whose output is in the range: the unit faults 0xE, the shadow holds nothing, the assigned device writes nowhere", () => {
    const { m, root, memory, vfio } = setup();
    m.tables.map(root, 4, 0x1000, INTERRUPT_RANGE_BASE + 0x3000, R | W);
    m.tables.map(root, 4, 0x2000, INTERRUPT_RANGE_BASE - K4, R | W);
    psi(m, 1, 0x1000);
    psi(m, 1, 0x2000);
    const bytes = new Uint8Array(4);
    expect(m.device.dmaWrite(SID, 0x1000, bytes)).toEqual({ ok: false, reason: FaultReason.InterruptAddress });
    expect(vfio.device.dmaWrite(0x1000, bytes)).toEqual({ ok: false, reason: FaultReason.WriteNotPermitted });
    expect(vfio.device.dmaRead(0x1000, bytes).ok).toBe(false);
    expect(vfio.hostIommu.lookup(0x1000)).toBeUndefined();
    // The page just below the range is memory, for the unit and for the shadow.
    expect(vfio.device.dmaWrite(0x2000, bytes).ok).toBe(true);
    expect(memory.writes).toEqual([INTERRUPT_RANGE_BASE - K4]);
    expect(vfio.events).toMatchObject({ map: 2, mapClippedAtInterruptRange: 1 });
  });

  it("superpages reaching into the range are mirrored only outside it, in aligned blocks, and unmapped whole", () => {
    const { m, root, memory, vfio } = setup();
    // A 2 MiB page over 0xFEE0_0000..0xFF00_0000 (its first half is the range) and a 1 GiB page over 0xC000_0000..2^32.
    m.tables.map(root, 4, 0x4000_0000, INTERRUPT_RANGE_BASE, R | W, 2);
    const gigaLeaf = m.tables.map(root, 4, 0x8000_0000, 0xc000_0000, R, 3);
    contextGlobal(m);
    const mappings = vfio.hostIommu.mappings();
    for (const h of mappings) {
      expect(h.hostAddress + h.size <= INTERRUPT_RANGE_BASE || h.hostAddress > INTERRUPT_RANGE_LIMIT).toBe(true);
      expect(h.iova % h.size).toBe(0);
      expect(h.hostAddress % h.size).toBe(0);
    }
    // Everything else of both pages is there: 2 MiB + 1 GiB less the range twice.
    expect(vfio.hostIommu.bytesMapped).toBe(M2 + G1 - 2 * 0x10_0000);
    expect(vfio.events.mapClippedAtInterruptRange).toBe(2);
    // Page by page over the two superpages, the shadow faults exactly where the unit faults with 0xE.
    const bytes = new Uint8Array(4);
    const probes = [0x4000_0000, 0x400f_f000, 0x4010_0000, 0x401f_f000, 0x8000_0000, 0xbedf_f000, 0xbee0_0000, 0xbeef_f000, 0xbef0_0000, 0xbfff_f000];
    for (const iova of probes) {
      const unitFault = m.device.dmaRead(SID, iova, bytes);
      const interrupt = !unitFault.ok && unitFault.reason === FaultReason.InterruptAddress;
      expect({ iova, shadow: vfio.hostIommu.lookup(iova) !== undefined }).toEqual({ iova, shadow: !interrupt });
      expect(vfio.device.dmaWrite(iova, bytes).ok).toBe(!interrupt && iova < 0x8000_0000); // the 1 GiB page is read-only
    }
    expect(memory.writes.some(inRange)).toBe(false);
    expect(memory.writes).toEqual([INTERRUPT_RANGE_LIMIT + 1, INTERRUPT_RANGE_LIMIT + 1 + 0xf_f000]);
    // The guest removes the 1 GiB page: its one UNMAP removes every block.
    m.ram.write64(gigaLeaf, 0n);
    psi(m, 1, 0x8000_0000);
    expect(vfio.hostIommu.bytesMapped).toBe(M2 - 0x10_0000);
    expect(vfio.hostIommu.emptyUnmaps).toBe(0);
  });

  it("pass-through context: the identity mapping less the range; TE off: the identity mapping whole, as the unit does not translate", () => {
    const { m, vfio } = setup(2);
    const bytes = new Uint8Array(4);
    expect(m.device.dmaWrite(SID, INTERRUPT_RANGE_BASE, bytes)).toEqual({ ok: false, reason: FaultReason.InterruptAddress });
    expect(vfio.hostIommu.lookup(INTERRUPT_RANGE_BASE)).toBeUndefined();
    expect(vfio.hostIommu.lookup(INTERRUPT_RANGE_LIMIT - 0xfff)).toBeUndefined();
    for (const address of [0, INTERRUPT_RANGE_BASE - K4, INTERRUPT_RANGE_LIMIT + 1, 2 ** 47]) {
      const h = vfio.hostIommu.lookup(address)!;
      expect(h.hostAddress + (address - h.iova)).toBe(address); // identity
    }
    expect(vfio.hostIommu.bytesMapped).toBe(2 ** 48 - 0x10_0000);
    m.device.writeRegister(Reg.GCMD, 4, 0n); // TE off
    expect(vfio.hostIommu.mappings()).toEqual([{ iova: 0, size: 2 ** 48, hostAddress: 0, permission: 3 }]);
    m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
    expect(vfio.hostIommu.lookup(INTERRUPT_RANGE_BASE)).toBeUndefined();
  });

  it("the blocks outside the range: aligned, largest first, covering exactly the rest", () => {
    const blocks: [number, number, number][] = [];
    blocksOutsideInterruptRange(2 ** 40, 0xc000_0000, G1, (iova, size, output) => blocks.push([iova, size, output]));
    let covered = 0;
    for (const [iova, size, output] of blocks) {
      expect(iova - 2 ** 40).toBe(output - 0xc000_0000);
      expect(output % size).toBe(0);
      covered += size;
    }
    expect(covered).toBe(G1 - 0x10_0000);
    expect(blocks.map((b) => b[1].toString(16))).toEqual(
      ["20000000", "10000000", "8000000", "4000000", "2000000", "800000", "400000", "200000", "100000", "1000000"]);
  });
});
