/** The unit's registers at offsets from its base, through the platform's MMIO, counted. */
import type { DriverCounters } from "./counters.ts";
import type { Mmio, MsiMessage } from "./platform.ts";

/** The four registers of one of the unit's interrupt events (fault event FE*, invalidation completion event IE*). */
export interface EventRegisters {
  control: number;
  data: number;
  address: number;
  upperAddress: number;
}

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

  /** An event's message: data, address, upper address, then control = 0 (unmasked), read back. */
  programEvent(event: EventRegisters, msi: MsiMessage): void {
    this.write32(event.data, msi.data);
    this.write32(event.address, msi.address);
    this.write32(event.upperAddress, msi.upperAddress);
    this.write32(event.control, 0);
    this.read32(event.control);
  }
}
