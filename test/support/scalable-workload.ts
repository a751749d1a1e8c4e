/**
 * A scalable-mode unit with one device's PASID mapped, and a 256-bit invalidation queue to drive,
 * for the scalable-mode benchmarks (bench/scalable.bench.ts) and their allocation checks
 * (test/scalable-hot-path-allocation.test.ts): both measure the same units. The queue also serves
 * the scalable cache tests.
 */
import { GuestRam, VtdDevice, type VtdOptions } from "../../src/vtd-device/index.ts";
import { Gcmd, GSTS_PERSISTENT_MASK, Iqa, Reg } from "../../src/spec/index.ts";
import { setField } from "../../src/spec/field.ts";
import { FirstStagePte as Fs, PasidGranularTranslationType as Pgtt, PasidIotlbDesc, PasidIotlbGranularity, ScalableDescriptorType, DESCRIPTOR_SIZE_256 } from "../../src/spec/scalable.ts";
import { R, W, type Machine } from "./tables.ts";
import { ScalableTables, enableScalable } from "./scalable-tables.ts";

export const SCALABLE_SID = 0x20;
export const SCALABLE_PASID = 1;
export const SCALABLE_DID = 2;
/** Below 2^31, as test/hot-path-allocation.test.ts explains (a small integer through every call). */
export const SCALABLE_IOVA = 0x1000_0000;
const OUTPUT = 0x100_0000;

export interface ScalableUnitOptions {
  /** The PASID entry's translation: first stage (PGTT 001) or second stage (PGTT 010). */
  pgtt: Pgtt.FirstStage | Pgtt.SecondStage;
  /** 4 KiB pages mapped from SCALABLE_IOVA (onto 1,024 pages of RAM, repeating). */
  pages: number;
  options?: Omit<VtdOptions, "memory">;
}

/**
 * A unit offering both stages and 8-bit PASIDs, scalable mode on, device SCALABLE_SID with
 * PASID-granular translation: PASID SCALABLE_PASID (domain SCALABLE_DID) is also its RID_PASID, so
 * requests with and without a PASID reach the same entry.
 */
export function scalableUnit(o: ScalableUnitOptions): Machine & { tables: ScalableTables } {
  const ram = new GuestRam(64 << 20);
  const device = new VtdDevice({ memory: ram, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 8, ...o.options });
  const tables = new ScalableTables(ram);
  const dir = tables.smContext(SCALABLE_SID, { pasidEnable: true, ridPasid: SCALABLE_PASID });
  const fs = tables.page();
  const ss = tables.pasidEntry(dir, SCALABLE_PASID, { pgtt: o.pgtt, aw: 2, did: SCALABLE_DID, firstStageRoot: fs });
  for (let p = 0; p < o.pages; p++) {
    const output = OUTPUT + (p % 1024) * 4096;
    if (o.pgtt === Pgtt.SecondStage) tables.map(ss, 4, SCALABLE_IOVA + p * 4096, output, R | W);
    else tables.mapFirstStage(fs, SCALABLE_IOVA + p * 4096, output, BigInt(Fs.RW | Fs.US));
  }
  const m = { ram, device, tables, interrupts: [] };
  enableScalable(m, tables.root);
  return m;
}

/** 256-bit descriptors as four qwords. */
export type WideDescriptor = readonly [bigint, bigint, bigint, bigint];

export const wideDesc = {
  /** PASID-based IOTLB invalidation, page-selective within a PASID (G 11; VT-d §6.5.2.4). */
  pasidIotlbPage(did: number, pasid: number, address: bigint, am = 0): WideDescriptor {
    let lo = BigInt(ScalableDescriptorType.PasidIotlb);
    lo = setField(lo, PasidIotlbDesc.G, PasidIotlbGranularity.Page);
    lo = setField(setField(lo, PasidIotlbDesc.DID, did), PasidIotlbDesc.PASID, pasid);
    return [lo, setField(address & PasidIotlbDesc.ADDR, PasidIotlbDesc.AM, am), 0n, 0n];
  },
};

/** The unit's queue with 256-bit descriptors (IQA.DW = 1): IQH and IQT count 32-byte slots. */
export class WideQueue {
  constructor(readonly m: Machine, readonly base = 0x200_0000, readonly qs = 7) {}

  /** 2^(QS + 7) slots of 32 bytes. */
  get entries(): number {
    return 128 << this.qs;
  }

  enable(): this {
    this.m.device.writeRegister(Reg.IQT, 8, 0n);
    this.m.device.writeRegister(Reg.IQA, 8, setField(setField(BigInt(this.base), Iqa.DW, 1), Iqa.QS, this.qs));
    const persistent = this.m.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK;
    this.m.device.writeRegister(Reg.GCMD, 4, persistent | Gcmd.QIE);
    return this;
  }

  /** Writes a descriptor into every slot of the ring (the tail is not moved). */
  fillRing(descriptor: (slot: number) => WideDescriptor): void {
    for (let i = 0; i < this.entries; i++) {
      const qwords = descriptor(i);
      for (let q = 0; q < 4; q++) this.m.ram.write64(this.base + i * DESCRIPTOR_SIZE_256 + q * 8, qwords[q]!);
    }
  }

  get head(): number {
    return Number(this.m.device.readRegister(Reg.IQH, 8)) / DESCRIPTOR_SIZE_256;
  }

  /** Writes one descriptor (qwords not given are 0) at the tail and moves the tail past it; the unit processes it at once. */
  submit(...qwords: bigint[]): void {
    const tail = Number(this.m.device.readRegister(Reg.IQT, 8)) / DESCRIPTOR_SIZE_256;
    for (let q = 0; q < 4; q++) this.m.ram.write64(this.base + tail * DESCRIPTOR_SIZE_256 + q * 8, qwords[q] ?? 0n);
    this.m.device.writeRegister(Reg.IQT, 8, BigInt(((tail + 1) % this.entries) * DESCRIPTOR_SIZE_256));
  }

  /** Processes the next n descriptors of a filled ring, in tail writes of up to a queue's worth each. */
  advance(n: number): void {
    let tail = this.head;
    for (let done = 0; done < n; ) {
      const batch = Math.min(n - done, this.entries - 1);
      tail = (tail + batch) % this.entries;
      this.m.device.writeRegister(Reg.IQT, 8, BigInt(tail * DESCRIPTOR_SIZE_256));
      done += batch;
    }
  }
}
