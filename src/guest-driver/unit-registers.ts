/** The unit's registers at offsets from its base, through the platform's MMIO, counted. */
import type { DriverCounters } from "./counters.ts";
import type { Mmio } from "./platform.ts";

export class UnitRegisters {
  constructor(readonly base: number, private readonly mmio: Mmio, private readonly counters: DriverCounters) {}

  read32(offset: number): number {
    this.counters.registerReads++;
    return this.mmio.read32(this.base + offset) >>> 0;
  }

  read64(offset: number): bigint {
    this.counters.registerReads++;
    return this.mmio.read64(this.base + offset);
  }

  write32(offset: number, value: number): void {
    this.counters.registerWrites++;
    this.mmio.write32(this.base + offset, value >>> 0);
  }

  write64(offset: number, value: bigint): void {
    this.counters.registerWrites++;
    this.mmio.write64(this.base + offset, value);
  }
}
