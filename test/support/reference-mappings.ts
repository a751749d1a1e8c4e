/**
 * An independent reading of what a requester id can reach: straight from RAM, following the
 * spec's layouts (VT-d §9.1 root entry, §9.3 context entry, §9.8 second-stage entries), written
 * for the tests without any code of the unit or of its notifiers. It assumes well-formed tables
 * (the guest driver's): no reserved-bit checks.
 */
import type { GuestRam } from "../../src/vtd-device/memory/guest-memory.ts";

export interface ReferenceMapping {
  iova: number;
  size: number;
  output: number;
  /** Read 1, write 2: the AND of R/W down the walk. */
  permission: number;
}

const TWO_32 = 2 ** 32;

function entry(ram: GuestRam, address: number): { lo: number; hi: number } {
  return { lo: ram.read32(address), hi: ram.read32(address + 4) };
}

function addressOf(e: { lo: number; hi: number }): number {
  return (e.hi & 0xf_ffff) * TWO_32 + ((e.lo & 0xffff_f000) >>> 0);
}

/**
 * Every leaf mapping of `sid`, in IOVA order, as the tables in `ram` hold them now: with
 * translation off or a pass-through context, one identity mapping of 2^awBits bytes.
 */
export function referenceMappings(ram: GuestRam, o: { rootTable: number; translationEnabled: boolean; sid: number; awBits: number }): ReferenceMapping[] {
  if (!o.translationEnabled) return [{ iova: 0, size: 2 ** o.awBits, output: 0, permission: 3 }];
  const root = entry(ram, o.rootTable + (o.sid >> 8) * 16);
  if ((root.lo & 1) === 0) return [];
  const context = entry(ram, addressOf(root) + (o.sid & 0xff) * 16);
  if ((context.lo & 1) === 0) return [];
  const translationType = (context.lo >> 2) & 3;
  if (translationType === 2) return [{ iova: 0, size: 2 ** o.awBits, output: 0, permission: 3 }];
  const aw = ram.read32(addressOf(root) + (o.sid & 0xff) * 16 + 8) & 7;
  const levels = aw + 2;
  const out: ReferenceMapping[] = [];
  const walk = (table: number, level: number, base: number, permission: number) => {
    const size = 2 ** (12 + 9 * (level - 1));
    for (let i = 0; i < 512; i++) {
      const e = entry(ram, table + i * 8);
      const p = permission & e.lo & 3;
      if (p === 0) continue;
      const iova = base + i * size;
      const leaf = level === 1 || ((e.lo & 0x80) !== 0 && level <= 3);
      if (leaf) out.push({ iova, size, output: addressOf(e) - (addressOf(e) % size), permission: p });
      else walk(addressOf(e), level - 1, iova, p);
    }
  };
  walk(addressOf(context), levels, 0, 3);
  return out;
}

/** The reference mapping holding `iova`, if any. */
export function referenceLookup(mappings: readonly ReferenceMapping[], iova: number): ReferenceMapping | undefined {
  let lo = 0, hi = mappings.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = mappings[mid]!;
    if (iova < m.iova) hi = mid - 1;
    else if (iova >= m.iova + m.size) lo = mid + 1;
    else return m;
  }
  return undefined;
}
