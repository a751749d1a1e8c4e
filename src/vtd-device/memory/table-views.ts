/**
 * How the unit's table reads (root, context, PASID and paging entries, IRTEs) reach guest memory:
 * through the write buffer when CAP.RWBF = 1 (write-buffer.ts), then through the CPU caches it
 * does not snoop when ECAP.C = 0 and the platform reports cache-line flushes (cpu-caches.ts).
 * DMA data, queue fetches and status writes use `memory` directly.
 */
import type { GuestMemory } from "./guest-memory.ts";
import { CpuCacheAccess } from "./cpu-caches.ts";
import { MemoryAccess } from "./memory-access.ts";
import { WriteBufferAccess } from "./write-buffer.ts";

export interface TableViewOptions {
  memory: GuestMemory;
  rwbf: boolean;
  writeBufferDrainMs: number;
  coherent: boolean;
  cacheLineFlushes: boolean;
}

export class TableViews {
  readonly memory: MemoryAccess;
  readonly writeBuffer: WriteBufferAccess | undefined;
  readonly cpuCaches: CpuCacheAccess | undefined;
  /** What table walks read through. */
  readonly tables: MemoryAccess;

  constructor(o: TableViewOptions, now: () => number) {
    this.memory = new MemoryAccess(o.memory);
    this.writeBuffer = o.rwbf ? new WriteBufferAccess(o.memory, o.writeBufferDrainMs, now) : undefined;
    this.cpuCaches = o.cacheLineFlushes && !o.coherent ? new CpuCacheAccess(o.memory, this.writeBuffer ?? this.memory, now) : undefined;
    this.tables = this.cpuCaches ?? this.writeBuffer ?? this.memory;
  }

  /** Reset and restore: every line the CPU or the buffer held back becomes visible. */
  drain(): void {
    this.writeBuffer?.flush();
    this.cpuCaches?.dropAll();
  }
}
