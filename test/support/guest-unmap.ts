/**
 * Fault injection into a running guest's IOMMU setup, from the host, for tests: one page of a
 * device's address space unmapped in the guest's own second-stage tables and the unit's IOTLB
 * invalidated for it through the guest's own invalidation queue, as the guest's driver would
 * (VT-d §6.5.2), then mapped back. Written from the spec (§9.1 root entry, §9.3 context entry,
 * §9.8 second-stage entries, §6.5.2.3/§6.5.2.8 descriptors), apart from the unit's code.
 *
 * Sharing the queue with the guest: the host runs between two guest instructions, so the guest
 * may have written descriptors at the tail without having moved IQT yet. The host therefore
 * saves every slot, fills the whole ring with its own descriptors (the invalidation, then fence
 * waits that do nothing), moves the tail once around the ring (two tail writes, the unit
 * processing as it goes) so that head and tail end where they were, and puts the slots back.
 * The guest's bookkeeping (its free head, its pending descriptors) never sees a difference.
 * Legacy mode with 128-bit descriptors only (what Linux 6.1 uses with this unit).
 */
import { Fsts, Gsts, Reg } from "../../src/spec/registers.ts";
import type { VtdDevice } from "../../src/vtd-device/device.ts";

const DESCRIPTOR_BYTES = 16;

/** Little-endian 64-bit access to the unit's view of guest memory. */
function memoryOf(unit: VtdDevice) {
  const memory = unit.options.memory;
  const scratch = new Uint8Array(8);
  const view = new DataView(scratch.buffer);
  return {
    read64(address: number): bigint {
      if (!memory.read(BigInt(address), scratch)) throw new Error(`guest memory: 0x${address.toString(16)} is outside RAM`);
      return view.getBigUint64(0, true);
    },
    write64(address: number, value: bigint): void {
      view.setBigUint64(0, value, true);
      if (!memory.write(BigInt(address), scratch)) throw new Error(`guest memory: 0x${address.toString(16)} is outside RAM`);
    },
    read(address: number, length: number): Uint8Array {
      const bytes = new Uint8Array(length);
      if (!memory.read(BigInt(address), bytes)) throw new Error(`guest memory: 0x${address.toString(16)} is outside RAM`);
      return bytes;
    },
    write(address: number, bytes: Uint8Array): void {
      if (!memory.write(BigInt(address), bytes)) throw new Error(`guest memory: 0x${address.toString(16)} is outside RAM`);
    },
  };
}

const tableAddress = (entry: bigint) => Number(entry & 0x000f_ffff_ffff_f000n);

/** The leaf second-stage entry the guest's tables hold for `sid`'s `iova` (4 KiB pages only). */
export interface LeafEntry {
  /** Guest-physical address of the 8-byte entry. */
  address: number;
  value: bigint;
  /** The domain id of `sid`'s context entry (what an invalidation names). */
  did: number;
}

export function leafEntry(unit: VtdDevice, sid: number, iova: bigint): LeafEntry {
  const memory = memoryOf(unit);
  if ((unit.readRegister(Reg.GSTS, 4) & Gsts.TES) === 0n) throw new Error("translation is off: nothing to unmap");
  const rootTable = tableAddress(unit.readRegister(Reg.RTADDR, 8));
  if ((unit.readRegister(Reg.RTADDR, 8) >> 10n) & 3n) throw new Error("the root table is not in legacy mode");
  const root = memory.read64(rootTable + (sid >> 8) * 16);
  if ((root & 1n) === 0n) throw new Error(`no root entry for bus ${sid >> 8}`);
  const contextAt = tableAddress(root) + (sid & 0xff) * 16;
  const lo = memory.read64(contextAt);
  const hi = memory.read64(contextAt + 8);
  if ((lo & 1n) === 0n) throw new Error(`no context entry for sid 0x${sid.toString(16)}`);
  if (((lo >> 2n) & 3n) !== 0n) throw new Error(`sid 0x${sid.toString(16)}: context entry TT ${(lo >> 2n) & 3n}, not translated`);
  const levels = Number(hi & 7n) + 2;
  const did = Number((hi >> 8n) & 0xffffn);
  let table = tableAddress(lo);
  for (let level = levels; ; level--) {
    const index = Number((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const address = table + index * 8;
    const value = memory.read64(address);
    if ((value & 3n) === 0n) throw new Error(`IOVA 0x${iova.toString(16)} is not mapped (level ${level})`);
    if (level === 1) return { address, value, did };
    if (value & 0x80n) throw new Error(`IOVA 0x${iova.toString(16)} is in a superpage (level ${level}): not unmapping that much`);
    table = tableAddress(value);
  }
}

/**
 * A page-selective IOTLB invalidation of `iova`'s page in domain `did`, through the guest's
 * invalidation queue (see the file's comment). Throws when the queue is not idle and error-free.
 */
export function invalidateIotlbPage(unit: VtdDevice, did: number, iova: bigint): void {
  if ((unit.readRegister(Reg.GSTS, 4) & Gsts.QIES) === 0n) throw new Error("queued invalidation is off");
  if (unit.readRegister(Reg.FSTS, 4) & (Fsts.IQE | Fsts.ITE | Fsts.ICE)) throw new Error("the invalidation queue has an error pending");
  const iqa = unit.readRegister(Reg.IQA, 8);
  if ((iqa >> 11n) & 1n) throw new Error("256-bit descriptors: not supported here");
  const slots = 256 << Number(iqa & 7n);
  const base = tableAddress(iqa);
  const head = Number((unit.readRegister(Reg.IQH, 8) >> 4n) & 0x7fffn);
  const tail = Number((unit.readRegister(Reg.IQT, 8) >> 4n) & 0x7fffn);
  if (head !== tail) throw new Error(`the invalidation queue is busy (head ${head}, tail ${tail})`);
  const memory = memoryOf(unit);
  const saved = memory.read(base, slots * DESCRIPTOR_BYTES);
  const at = (slot: number) => base + (slot % slots) * DESCRIPTOR_BYTES;
  // IOTLB invalidate (type 2), granularity 3 (page), the domain; address, AM 0, IH 0.
  memory.write64(at(head), 2n | (3n << 4n) | (BigInt(did) << 16n));
  memory.write64(at(head) + 8, iova & ~0xfffn);
  for (let i = 1; i < slots; i++) {
    memory.write64(at(head + i), 5n | (1n << 6n)); // invalidation wait (type 5), FN only: a fence, no status, no interrupt
    memory.write64(at(head + i) + 8, 0n);
  }
  try {
    unit.writeRegister(Reg.IQT, 8, BigInt(((head + 1) % slots) << 4));
    unit.writeRegister(Reg.IQT, 8, BigInt(head << 4));
    const after = Number((unit.readRegister(Reg.IQH, 8) >> 4n) & 0x7fffn);
    if (after !== head) throw new Error(`the queue did not come round: head ${after}, expected ${head}`);
    if (unit.readRegister(Reg.FSTS, 4) & Fsts.IQE) throw new Error("the unit refused the host's descriptors (IQE)");
  } finally {
    memory.write(base, saved);
  }
}

/**
 * Unmaps the page of `iova` for `sid` in the guest's tables, flushes the entry's line and
 * invalidates it, as the guest's driver would; returns the
 * function that puts the entry back (invalidating again only in caching mode, where the unit
 * may have cached the not-present entry).
 */
export function unmapGuestPage(unit: VtdDevice, sid: number, iova: bigint): { entry: LeafEntry; mapBack: () => void } {
  const entry = leafEntry(unit, sid, iova);
  const memory = memoryOf(unit);
  // A store the guest's driver would follow with CLFLUSH (ECAP.C = 0): the unit is told of it.
  const store = (value: bigint) => {
    memory.write64(entry.address, value);
    unit.cacheLineFlushed(entry.address);
  };
  store(0n);
  invalidateIotlbPage(unit, entry.did, iova);
  const mapBack = () => {
    store(entry.value);
    if (unit.options.cachingMode) invalidateIotlbPage(unit, entry.did, iova);
  };
  return { entry, mapBack };
}
