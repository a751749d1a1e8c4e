/** Builds queued-invalidation descriptors (VT-d §6.5.2) and drives a unit's queue, for tests. */
import { DescriptorType, Gcmd, GSTS_PERSISTENT_MASK, Reg } from "../../src/spec/index.ts";
import type { Machine } from "./tables.ts";

export type Descriptor = [lo: bigint, hi: bigint];

export const desc = {
  contextGlobal: (): Descriptor => [BigInt(DescriptorType.ContextCache) | (1n << 4n), 0n],
  contextDomain: (did: number): Descriptor => [BigInt(DescriptorType.ContextCache) | (2n << 4n) | (BigInt(did) << 16n), 0n],
  contextDevice: (sid: number, did = 0, fm = 0): Descriptor =>
    [BigInt(DescriptorType.ContextCache) | (3n << 4n) | (BigInt(did) << 16n) | (BigInt(sid) << 32n) | (BigInt(fm) << 48n), 0n],
  iotlbGlobal: (): Descriptor => [BigInt(DescriptorType.Iotlb) | (1n << 4n), 0n],
  iotlbDomain: (did: number): Descriptor => [BigInt(DescriptorType.Iotlb) | (2n << 4n) | (BigInt(did) << 16n), 0n],
  iotlbPage: (did: number, address: bigint, am = 0, ih = false): Descriptor =>
    [BigInt(DescriptorType.Iotlb) | (3n << 4n) | (BigInt(did) << 16n), address | (ih ? 1n << 6n : 0n) | BigInt(am)],
  deviceTlb: (sid: number, address: bigint, size = false): Descriptor =>
    [BigInt(DescriptorType.DeviceTlb) | (BigInt(sid) << 32n), address | (size ? 1n : 0n)],
  iec: (): Descriptor => [BigInt(DescriptorType.InterruptEntryCache), 0n],
  wait: (o: { sw?: boolean; if?: boolean; fn?: boolean; data?: number; address?: bigint }): Descriptor =>
    [BigInt(DescriptorType.InvalidationWait) | (o.if ? 1n << 4n : 0n) | (o.sw ? 1n << 5n : 0n) | (o.fn ? 1n << 6n : 0n) | (BigInt(o.data ?? 0) << 32n),
      o.address ?? 0n],
};

export class Queue {
  tail = 0;
  constructor(readonly m: Machine, readonly base = 0x80_0000, readonly qs = 0) {}
  get entries(): number { return 256 << this.qs; }

  enable(): this {
    this.m.device.writeRegister(Reg.IQT, 8, 0n);
    this.m.device.writeRegister(Reg.IQA, 8, BigInt(this.base) | BigInt(this.qs));
    const persistent = this.m.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK;
    this.m.device.writeRegister(Reg.GCMD, 4, persistent | Gcmd.QIE);
    return this;
  }

  /** Writes descriptors at the tail, then the new tail. */
  submit(...descriptors: Descriptor[]): void {
    for (const [lo, hi] of descriptors) {
      this.m.ram.write64(this.base + this.tail * 16, lo);
      this.m.ram.write64(this.base + this.tail * 16 + 8, hi);
      this.tail = (this.tail + 1) % this.entries;
    }
    this.m.device.writeRegister(Reg.IQT, 8, BigInt(this.tail) << 4n);
  }

  /** Writes a descriptor into every slot of the ring (the tail is not moved): for benchmarks that go round it. */
  fillRing(descriptor: (slot: number) => Descriptor): void {
    for (let i = 0; i < this.entries; i++) {
      const [lo, hi] = descriptor(i);
      this.m.ram.write64(this.base + i * 16, lo);
      this.m.ram.write64(this.base + i * 16 + 8, hi);
    }
  }

  /** Processes the next n descriptors of a filled ring, in tail writes of up to a queue's worth each. */
  advance(n: number): void {
    let tail = this.head;
    for (let done = 0; done < n; ) {
      const batch = Math.min(n - done, this.entries - 1);
      tail = (tail + batch) % this.entries;
      this.m.device.writeRegister(Reg.IQT, 8, BigInt(tail) << 4n);
      done += batch;
    }
  }

  get head(): number {
    return Number(this.m.device.readRegister(Reg.IQH, 8) >> 4n);
  }
}
