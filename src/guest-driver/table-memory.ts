/**
 * Stores to the unit's tables (root, context, second-stage paging), each made visible to a
 * non-coherent unit (ECAP.C = 0) by flushing it from the CPU cache (ECAP.C, VT-d §11.4.3; what Linux's
 * __iommu_flush_cache does). Entries are handled as numbers: the driver never sets bits 62-63,
 * so every entry it writes or reads back is exact below 2^53.
 */
import { PAGE_SIZE } from "../spec/entries.ts";
import { TWO_POW_32 } from "../spec/numbers.ts";
import type { DriverCounters } from "./counters.ts";
import type { CpuCache, PageAllocator, PhysicalMemory } from "./platform.ts";

export const TABLE_BYTES = PAGE_SIZE;

export class TableMemory {
  constructor(
    private readonly memory: PhysicalMemory,
    private readonly allocator: PageAllocator,
    private readonly cache: CpuCache,
    private readonly counters: DriverCounters,
    /** ECAP.C = 0 and the rule not suppressed. */
    readonly flushNeeded: boolean,
  ) {}

  /** A zeroed table page, flushed so the unit reads zeroes there (not what the page held before). */
  allocateTable(): number {
    const page = this.allocator.allocatePages(1);
    this.flush(page, TABLE_BYTES);
    return page;
  }

  freeTable(page: number): void {
    this.allocator.freePages(page, 1);
  }

  /** The 64-bit entry at `address` as a number. */
  read(address: number): number {
    return this.memory.read32(address + 4) * TWO_POW_32 + this.memory.read32(address);
  }

  /** One 64-bit store of an entry. Not yet visible to a non-coherent unit: call `flush`. */
  write(address: number, value: number): void {
    this.memory.write64(address, BigInt(value));
  }

  write64(address: number, value: bigint): void {
    this.memory.write64(address, value);
  }

  /** CLFLUSH of the lines under [address, address + length), when the unit does not snoop. */
  flush(address: number, length: number): void {
    if (!this.flushNeeded || length <= 0) return;
    const line = this.cache.lineSize;
    this.counters.cacheFlushCalls++;
    this.counters.cacheLinesFlushed += Math.floor((address + length - 1) / line) - Math.floor(address / line) + 1;
    this.cache.flush(address, length);
  }
}
