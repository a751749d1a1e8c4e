/**
 * The strict checker's views of guest memory and its comparison of translations. Each request is
 * reduced to what decides its outcome: the context entry (or that there is none) and, for its
 * 4 KiB page, the output page and the read / write permission (nothing accessible when the walk
 * ends in a not-present or faulting entry). Two views that agree on that agree on the request,
 * whatever the shape of the tables (a 2 MiB leaf and the 4 KiB table that replaces it are equal).
 */
import type { CpuView } from "./checker-options.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { MemoryAccess } from "../memory/memory-access.ts";
import type { LineCopies } from "../memory/line-copies.ts";
import { LEVEL_SIZE, type ContextWalk, type PageWalk } from "../translation/walk.ts";

/** The unit's view (memory), remembering the address of every dword a walk reads, in order. */
export class RecordingAccess extends MemoryAccess {
  readonly reads: number[] = [];

  override read32(address: number): number {
    this.reads.push(address);
    return super.read32(address);
  }
}

/** The unit's view through line copies (CAP.RWBF's write buffer, ECAP.C = 0's CPU caches), recording every dword read; nothing is remembered by reading. */
export class BufferedRecordingAccess extends MemoryAccess {
  readonly reads: number[] = [];

  constructor(memory: GuestMemory, private readonly buffer: LineCopies) {
    super(memory);
  }

  override read32(address: number): number {
    this.reads.push(address);
    return this.buffer.copied(address) ?? super.read32(address);
  }
}

/** The CPU's view, through its caches. Outside RAM, or when the view throws, reads fail as the unit's do. */
export class CpuViewAccess extends MemoryAccess {
  constructor(memory: GuestMemory, private readonly view: CpuView) {
    super(memory);
  }

  override read32(address: number): number {
    if (!(address >= 0 && address + 4 <= this.memory.size)) return -1;
    try {
      const value = this.view.read32(address);
      return typeof value === "number" && Number.isFinite(value) ? value >>> 0 : -1;
    } catch {
      return -1;
    }
  }
}

/** What a request's 4 KiB page translates to: permission bits (1 read, 2 write) and the output page. */
export class PageOutcome {
  permission = 0;
  output = 0;

  /** From a walk (permission 0 unless a leaf was reached). */
  fromWalk(walk: PageWalk, address: number): this {
    if (walk.structural !== 0) return this.set(0, 0);
    const size = LEVEL_SIZE[walk.level]!;
    return this.set(walk.permission, walk.pageOutput + (address % size) - (address % 4096));
  }

  set(permission: number, output: number): this {
    this.permission = permission;
    this.output = permission === 0 ? 0 : output;
    return this;
  }

  equals(other: PageOutcome): boolean {
    return this.permission === other.permission && this.output === other.output;
  }
}

/** Two context walks lead to the same place: both fault, or both give the same entry. */
export function sameContext(a: ContextWalk, b: ContextWalk): boolean {
  if (a.reason !== 0 || b.reason !== 0) return a.reason !== 0 && b.reason !== 0;
  return a.did === b.did && a.tableRoot === b.tableRoot && a.aw === b.aw &&
    a.translationType === b.translationType && a.faultProcessingDisable === b.faultProcessingDisable;
}
