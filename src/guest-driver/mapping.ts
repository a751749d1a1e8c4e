/**
 * Map and unmap: the arguments checked, the domain's page tables changed (superpages split by
 * DomainPageTables, atomically unless a test suppresses it), and the invalidation each change owes
 * handed to the submission: under CM = 1 every new second-stage mapping (the unit may have cached
 * "not present"), otherwise (and for first-stage domains, whose not-present entries no unit caches)
 * a write-buffer flush; every unmap before its IOVA is reused.
 */
import { PAGE_SIZE } from "../spec/entries.ts";
import type { DriverCounters } from "./counters.ts";
import type { UnitCapabilities } from "./discovery.ts";
import type { Domain } from "./domain.ts";
import { hex, VtdDriverError } from "./errors.ts";
import type { InvalidationSubmission } from "./invalidation-submission.ts";
import type { DriverRule } from "./options.ts";

const R = 1, W = 2;

export type Access = "r" | "w" | "rw";
export type PageSize = "4K" | "2M" | "1G";

export interface MapOptions {
  /** The largest page the mapping may use. Default 1G (what CAP.SLLPS allows). */
  largestPage?: PageSize;
}

const LARGEST_LEVEL: Record<PageSize, number> = { "4K": 1, "2M": 2, "1G": 3 };

export class Mapping {
  constructor(
    private readonly caps: UnitCapabilities,
    private readonly counters: DriverCounters,
    private readonly submission: InvalidationSubmission,
    private readonly keeps: (rule: DriverRule) => boolean,
    /** Throws unless the driver is initialised and `domain` is one of its domains. */
    private readonly requireDomain: (domain: Domain) => void,
  ) {}

  map(domain: Domain, iova: number, phys: number, length: number, access: Access, options: MapOptions): void {
    const permission = this.checkMap(domain, iova, phys, length, access, options);
    this.submission.settlePendingUnmaps(domain, iova, length);
    const mapped = domain.tables.firstMapped(iova, iova + length);
    if (mapped >= 0) throw new VtdDriverError("overlap", `map ${hex(iova)}+${hex(length)} in domain ${domain.did}: ${hex(mapped)} is already mapped`);
    domain.iovas.reserve(iova, length);
    this.install(domain, iova, phys, length, permission, options);
  }

  mapBuffer(domain: Domain, phys: number, length: number, access: Access, options: MapOptions & { dmaMask?: number }): number {
    const { start, size } = bufferPages("mapBuffer: phys", phys, length);
    const permission = this.checkMap(domain, 0, start, size, access, options);
    const limit = options.dmaMask === undefined ? domain.iovas.end : Math.min(domain.iovas.end, options.dmaMask + 1);
    const iova = domain.iovas.allocate(size, limit);
    this.install(domain, iova, start, size, permission, options);
    return iova + (phys - start);
  }

  unmap(domain: Domain, iova: number, length: number, async: boolean): Promise<void> | undefined {
    return this.retire(domain, iova, length, () => domain.iovas.releaseWithin(iova, length), async);
  }

  unmapBuffer(domain: Domain, dmaAddress: number, length: number, async: boolean): Promise<void> | undefined {
    const { start, size } = bufferPages("unmapBuffer: address", dmaAddress, length);
    return this.retire(domain, start, size, () => domain.iovas.release(start, size), async);
  }

  /**
   * New permissions for mapped [iova, iova + length): each leaf rewritten, then invalidated as an
   * unmap is (a present entry changed, VT-d §6.5), before the call returns.
   */
  protect(domain: Domain, iova: number, length: number, access: Access): void {
    this.requireDomain(domain);
    const permission = access === "r" ? R : access === "w" ? W : access === "rw" ? R | W : -1;
    if (permission < 0) throw new VtdDriverError("bad-argument", `access ${String(access)}: expected "r", "w" or "rw"`);
    requirePageAligned({ iova, length });
    if (length === 0 || iova + length > 2 ** domain.widthBits) throw new VtdDriverError("bad-argument", `protect ${hex(iova)}+${hex(length)}: empty or beyond the domain`);
    const hole = domain.tables.firstUnmapped(iova, iova + length);
    if (hole >= 0) throw new VtdDriverError("not-mapped", `protect ${hex(iova)}+${hex(length)} in domain ${domain.did}: ${hex(hole)} is not mapped`);
    domain.tables.protect(iova, iova + length, permission);
    if (this.keeps("permission-change-invalidation")) this.submission.invalidateRange(domain, iova, length, true, true);
  }

  private install(domain: Domain, iova: number, phys: number, length: number, permission: number, options: MapOptions): void {
    domain.tables.map(iova, phys, length, permission, LARGEST_LEVEL[options.largestPage ?? "1G"]);
    this.counters.mapCalls++;
    this.counters.bytesMapped += length;
    // CM governs second-stage structures only: first-stage updates follow the non-CM rules (VT-d §6.1).
    if (this.caps.cachingMode && domain.stage === "second") {
      // The unit may have cached "not present" for these addresses.
      if (this.keeps("cm-map-invalidation")) this.submission.invalidateRange(domain, iova, length, false, false);
    } else {
      this.submission.writeBufferFlush();
    }
  }

  private checkMap(domain: Domain, iova: number, phys: number, length: number, access: Access, options: MapOptions): number {
    this.requireDomain(domain);
    const permission = access === "r" ? R : access === "w" ? W : access === "rw" ? R | W : -1;
    if (permission < 0) throw new VtdDriverError("bad-argument", `access ${String(access)}: expected "r", "w" or "rw"`);
    if (options.largestPage !== undefined && !(options.largestPage in LARGEST_LEVEL)) {
      throw new VtdDriverError("bad-argument", `largestPage ${String(options.largestPage)}: expected 4K, 2M or 1G`);
    }
    requirePageAligned({ iova, phys, length });
    if (length === 0) throw new VtdDriverError("bad-argument", "length 0: nothing to map");
    if (iova + length > 2 ** domain.widthBits) {
      throw new VtdDriverError("bad-argument", `iova ${hex(iova)}+${hex(length)} is beyond the domain's ${domain.widthBits}-bit address space`);
    }
    if (phys + length > 2 ** this.caps.mgawBits) {
      throw new VtdDriverError("bad-argument", `phys ${hex(phys)}+${hex(length)} is beyond the unit's ${this.caps.mgawBits}-bit address width`);
    }
    return permission;
  }

  private retire(domain: Domain, iova: number, length: number, release: () => void, async: boolean): Promise<void> | undefined {
    this.requireDomain(domain);
    requirePageAligned({ iova, length });
    if (length === 0 || iova + length > 2 ** domain.widthBits) throw new VtdDriverError("bad-argument", `unmap ${hex(iova)}+${hex(length)}: empty or beyond the domain`);
    const hole = domain.tables.firstUnmapped(iova, iova + length);
    if (hole >= 0) throw new VtdDriverError("not-mapped", `unmap ${hex(iova)}+${hex(length)} in domain ${domain.did}: ${hex(hole)} is not mapped`);

    const atomic = this.keeps("atomic-superpage-split");
    const result = domain.tables.unmap(iova, iova + length, atomic, (base, size) => {
      // Test-only naive split: the superpage is gone, and the unit is told so, before its table is in.
      this.submission.runRange(domain, base, size, false, true);
    });
    this.counters.unmapCalls++;
    this.counters.superpageSplits += result.splits;
    if (!this.keeps("unmap-invalidation")) {
      release();
      return undefined;
    }
    return this.submission.retire(domain, iova, length, !result.nonLeafChanged, release, async);
  }
}

/** Each value a whole, 4 KiB-aligned number of bytes (checked in the order given). */
function requirePageAligned(values: Record<string, number>): void {
  for (const [name, value] of Object.entries(values)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new VtdDriverError("bad-argument", `${name} ${String(value)}: expected a whole number of bytes`);
    if (value % PAGE_SIZE !== 0) throw new VtdDriverError("unaligned", `${name} ${hex(value)} is not 4 KiB aligned`);
  }
}

/** The whole pages a buffer [address, address + length) touches; `what` names the call and the address in the error. */
function bufferPages(what: string, address: number, length: number): { start: number; size: number } {
  if (!Number.isSafeInteger(address) || address < 0 || !Number.isSafeInteger(length) || length <= 0) {
    throw new VtdDriverError("bad-argument", `${what} ${String(address)} and length ${String(length)} must be whole, length above 0`);
  }
  const start = address - (address % PAGE_SIZE);
  return { start, size: Math.ceil((address + length) / PAGE_SIZE) * PAGE_SIZE - start };
}
