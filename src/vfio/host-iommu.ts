/**
 * The host IOMMU as VFIO drives it (VFIO_IOMMU_MAP_DMA / UNMAP_DMA of a type1 container): a
 * table of host mappings, each a power-of-two block aligned to its size (what an IOMMU page
 * table holds: 4 KiB, 2 MiB, 1 GiB pages, or a whole identity space), with counters of the
 * map and unmap calls made, which is what a vIOMMU shadow costs a real host.
 *
 * Like the kernel's type1 driver it refuses a map over an existing mapping (EEXIST) and an
 * unmap that would cut a mapping in two (EINVAL); an unmap removes every mapping inside its range.
 */
export interface HostMapping {
  readonly iova: number;
  readonly size: number;
  /** Where the device's access lands: a guest-physical address (the guest's RAM is the host's). */
  readonly hostAddress: number;
  /** Read 1, write 2. */
  readonly permission: number;
}

export class HostIommuError extends Error {
  constructor(readonly code: "exists" | "bisects" | "bad-argument", message: string) {
    super(message);
    this.name = "HostIommuError";
  }
}

const PAGE = 4096;

/**
 * One size class: IOVA -> mapping. Removal leaves a tombstone (undefined) instead of deleting:
 * V8's Map keeps deleted entries in their hash chain until it next grows, so deleting and
 * re-adding the same key slows every lookup in that chain (to microseconds after a few thousand
 * map/unmap pairs). Tombstones are swept once they outnumber the live entries.
 */
class SizeClass {
  readonly entries = new Map<number, HostMapping | undefined>();
  live = 0;
  private tombstones = 0;

  constructor(readonly size: number) {}

  get(iova: number): HostMapping | undefined {
    return this.entries.get(iova);
  }

  add(m: HostMapping): void {
    if (this.entries.has(m.iova)) this.tombstones--;
    this.entries.set(m.iova, m);
    this.live++;
  }

  /** Removes every mapping at once (an unmap covering the whole class). */
  clear(): void {
    this.entries.clear();
    this.live = 0;
    this.tombstones = 0;
  }

  remove(iova: number): void {
    this.entries.set(iova, undefined);
    this.live--;
    if (++this.tombstones > 64 && this.tombstones > this.live) {
      for (const [key, value] of [...this.entries]) if (value === undefined) this.entries.delete(key);
      this.tombstones = 0;
    }
  }
}

export class HostIommu {
  /** VFIO_IOMMU_MAP_DMA calls. */
  mapCalls = 0;
  /** VFIO_IOMMU_UNMAP_DMA calls, and how many of them found nothing to remove. */
  unmapCalls = 0;
  emptyUnmaps = 0;
  /** Bytes mapped now. */
  bytesMapped = 0;
  /** Mappings by size class. */
  private readonly classes: SizeClass[] = [];
  private mappingCount = 0;

  get count(): number {
    return this.mappingCount;
  }

  map(iova: number, size: number, hostAddress: number, permission: number): void {
    this.mapCalls++;
    checkBlock("map", iova, size);
    if (!Number.isSafeInteger(hostAddress) || hostAddress < 0 || hostAddress % PAGE !== 0) {
      throw new HostIommuError("bad-argument", `map: host address ${String(hostAddress)} is not a 4 KiB aligned address`);
    }
    if (permission !== 1 && permission !== 2 && permission !== 3) throw new HostIommuError("bad-argument", `map: permission ${String(permission)} is not read (1), write (2) or both (3)`);
    const clash = this.firstOverlapping(iova, iova + size);
    if (clash) throw new HostIommuError("exists", `map ${hex(iova)}+${hex(size)}: ${hex(clash.iova)}+${hex(clash.size)} is already mapped`);
    let sizeClass = this.classes.find((c) => c.size === size);
    if (!sizeClass) this.classes.push((sizeClass = new SizeClass(size)));
    sizeClass.add({ iova, size, hostAddress, permission });
    this.mappingCount++;
    this.bytesMapped += size;
  }

  /** Removes every mapping inside [iova, iova + size); returns the bytes unmapped. */
  unmap(iova: number, size: number): number {
    this.unmapCalls++;
    checkBlock("unmap", iova, size);
    const end = iova + size;
    const found = this.overlapping(iova, end);
    for (const m of found) {
      if (m.iova < iova || m.iova + m.size > end) {
        throw new HostIommuError("bisects", `unmap ${hex(iova)}+${hex(size)} would cut ${hex(m.iova)}+${hex(m.size)} in two`);
      }
    }
    let bytes = 0;
    for (const c of this.classes) {
      let inClass = 0;
      for (const m of found) if (m.size === c.size) inClass++;
      if (inClass === 0) continue;
      // Everything of this size goes (an unmap of a whole space): one clear, not a removal each.
      if (inClass === c.live) c.clear();
      else for (const m of found) if (m.size === c.size) c.remove(m.iova);
    }
    for (const m of found) {
      this.mappingCount--;
      bytes += m.size;
    }
    this.bytesMapped -= bytes;
    if (bytes === 0) this.emptyUnmaps++;
    return bytes;
  }

  /** The mapping holding `iova`, if any. */
  lookup(iova: number): HostMapping | undefined {
    const classes = this.classes;
    for (let i = 0; i < classes.length; i++) {
      const c = classes[i]!;
      if (c.live === 0) continue;
      const hit = c.get(iova - (iova % c.size));
      if (hit) return hit;
    }
    return undefined;
  }

  /** Every mapping, in IOVA order. Allocates. */
  mappings(): HostMapping[] {
    const out: HostMapping[] = [];
    for (const c of this.classes) for (const m of c.entries.values()) if (m) out.push(m);
    return out.sort((a, b) => a.iova - b.iova);
  }

  /** The first mapping overlapping [start, end) (a map's check: allocates nothing). */
  private firstOverlapping(start: number, end: number): HostMapping | undefined {
    const classes = this.classes;
    for (let i = 0; i < classes.length; i++) {
      const c = classes[i]!;
      if (c.live === 0) continue;
      const size = c.size;
      const first = start - (start % size);
      if (Math.ceil((end - first) / size) <= c.live) {
        for (let key = first; key < end; key += size) {
          const m = c.get(key);
          if (m) return m;
        }
      } else {
        for (const m of c.entries.values()) if (m && m.iova < end && m.iova + m.size > start) return m;
      }
    }
    return undefined;
  }

  private overlapping(start: number, end: number): HostMapping[] {
    const out: HostMapping[] = [];
    for (const c of this.classes) {
      if (c.live === 0) continue;
      const size = c.size;
      const first = start - (start % size);
      const keys = Math.ceil((end - first) / size);
      if (keys <= c.live) {
        for (let key = first; key < end; key += size) {
          const m = c.get(key);
          if (m) out.push(m);
        }
      } else {
        for (const m of c.entries.values()) if (m && m.iova < end && m.iova + m.size > start) out.push(m);
      }
    }
    return out;
  }
}

function checkBlock(what: string, iova: number, size: number): void {
  if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(size) || size < PAGE || !Number.isInteger(Math.log2(size)) || iova % size !== 0) {
    throw new HostIommuError("bad-argument", `${what} ${String(iova)}+${String(size)}: expected a power-of-two size of at least 4 KiB and an IOVA aligned to it`);
  }
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
