/**
 * Builds VT-d tables in a GuestRam for tests, straight from the spec's layouts (a test-side
 * reference, deliberately independent of the guest driver).
 */
import { GuestRam, VtdDevice } from "../../src/vtd-device/index.ts";
import { Gcmd, Reg } from "../../src/spec/index.ts";

export const R = 1n, W = 2n;

export class Tables {
  private nextFree: number;
  readonly root: number;

  constructor(readonly ram: GuestRam, firstFree = 0x10_0000) {
    this.nextFree = firstFree;
    this.root = this.page();
  }

  page(): number {
    const at = this.nextFree;
    this.nextFree += 4096;
    this.ram.direct.fill(0, at, at + 4096);
    return at;
  }

  /** Makes the root entry of `bus` present (allocating its context table) and returns the table. */
  contextTable(bus: number): number {
    const entry = this.root + bus * 16;
    const lo = this.ram.read64(entry);
    if (lo & 1n) return Number(lo & ~0xfffn);
    const table = this.page();
    this.ram.write64(entry, BigInt(table) | 1n);
    return table;
  }

  /** Writes a context entry for `sid`; returns the second-level table root (allocated unless given). */
  context(sid: number, options: { did: number; aw?: number; tt?: number; fpd?: boolean; present?: boolean; tableRoot?: number }): number {
    const table = this.contextTable(sid >> 8);
    const root = options.tableRoot ?? this.page();
    const entry = table + (sid & 0xff) * 16;
    const lo = BigInt(root) | (BigInt(options.tt ?? 0) << 2n) | (options.fpd ? 2n : 0n) | (options.present === false ? 0n : 1n);
    const hi = BigInt(options.aw ?? 1) | (BigInt(options.did) << 8n);
    this.ram.write64(entry + 8, hi);
    this.ram.write64(entry, lo);
    return root;
  }

  /** Maps `iova` → `output` with a leaf at `leafLevel` (1: 4K, 2: 2M, 3: 1G) in a table of `levels` levels. */
  map(tableRoot: number, levels: number, iova: number, output: number, permission: bigint, leafLevel = 1, extraLeafBits = 0n): number {
    let table = tableRoot;
    for (let level = levels; level > leafLevel; level--) {
      const index = Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
      const entry = table + index * 8;
      let value = this.ram.read64(entry);
      if ((value & 3n) === 0n) {
        value = BigInt(this.page()) | 3n;
        this.ram.write64(entry, value);
      }
      table = Number(value & 0x000f_ffff_ffff_f000n);
    }
    const index = Math.floor(iova / 2 ** (12 + 9 * (leafLevel - 1))) % 512;
    const entry = table + index * 8;
    this.ram.write64(entry, BigInt(output) | permission | (leafLevel > 1 ? 0x80n : 0n) | extraLeafBits);
    return entry;
  }

  /** Address of the leaf entry for `iova` (tables must exist down to `leafLevel`). */
  entryOf(tableRoot: number, levels: number, iova: number, leafLevel = 1): number {
    let table = tableRoot;
    for (let level = levels; level > leafLevel; level--) {
      const index = Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
      table = Number(this.ram.read64(table + index * 8) & 0x000f_ffff_ffff_f000n);
    }
    return table + (Math.floor(iova / 2 ** (12 + 9 * (leafLevel - 1))) % 512) * 8;
  }
}

export interface Machine {
  ram: GuestRam;
  device: VtdDevice;
  tables: Tables;
  interrupts: { address: bigint; data: number }[];
}

export function machine(options: Partial<ConstructorParameters<typeof VtdDevice>[0]> = {}, ramBytes = 64 << 20): Machine {
  const ram = new GuestRam(ramBytes);
  const interrupts: { address: bigint; data: number }[] = [];
  const device = new VtdDevice({ memory: ram, onInterrupt: (address, data) => interrupts.push({ address, data }), ...options });
  return { ram, device, tables: new Tables(ram), interrupts };
}

/** Root table latched and translation on, as a driver would (register-based invalidations). */
export function enableTranslation(m: Machine): void {
  m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.root));
  m.device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
  m.device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
}

export function gsts(m: Machine): bigint {
  return m.device.readRegister(Reg.GSTS, 4);
}
