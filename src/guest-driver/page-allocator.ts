/**
 * The page allocator both platforms give the driver: first fit over freed runs, then a bump
 * pointer up to `limit`; pages are zeroed by `zero` (CPU stores, the platform's way).
 */
import { PAGE_SIZE } from "../spec/entries.ts";
import type { PageAllocator } from "./platform.ts";

export type RangePageAllocator = PageAllocator & { readonly pagesInUse: number; readonly base: number; readonly limit: number };

export function rangePageAllocator(owner: string, base: number, limit: number, zero: (address: number, bytes: number) => void): RangePageAllocator {
  let next = base;
  let inUse = 0;
  const free: { address: number; count: number }[] = [];
  return {
    base,
    limit,
    get pagesInUse() {
      return inUse;
    },
    allocatePages: (count) => {
      if (!Number.isInteger(count) || count <= 0) throw new RangeError(`allocatePages: bad count ${count}`);
      let address: number;
      const i = free.findIndex((f) => f.count >= count);
      if (i >= 0) {
        const f = free[i]!;
        address = f.address;
        f.address += count * PAGE_SIZE;
        f.count -= count;
        if (f.count === 0) free.splice(i, 1);
      } else if (next + count * PAGE_SIZE <= limit) {
        address = next;
        next += count * PAGE_SIZE;
      } else {
        throw new RangeError(`${owner}: out of driver memory (${count} pages wanted, ${inUse} in use)`);
      }
      inUse += count;
      zero(address, count * PAGE_SIZE);
      return address;
    },
    freePages: (address, count) => {
      inUse -= count;
      free.push({ address, count });
    },
  };
}
