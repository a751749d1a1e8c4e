/**
 * Interrupt remapping for tests: IRTEs and interrupt requests built straight from the spec's
 * layouts (VT-d §5.1.2.2, §9.10), a unit with interrupt remapping on (QI, IRTA, SIRTP, IRE in
 * Linux's order), and the interrupt-entry-cache descriptor.
 */
import { DescriptorType, Gcmd, GSTS_PERSISTENT_MASK, Reg } from "../../src/spec/index.ts";
import { machine, type Machine } from "./tables.ts";
import { Queue, type Descriptor } from "./queue.ts";

export const TABLE = 0x30_0000;

export interface IrteFields {
  present?: boolean;
  fpd?: boolean;
  dm?: number;
  rh?: number;
  tm?: number;
  dlm?: number;
  vector?: number;
  /** xAPIC id: goes to DST[15:8]. */
  apicId?: number;
  svt?: number;
  sq?: number;
  sid?: number;
  /** Raw bits or-ed into the low / high qword (reserved-bit tests). */
  lo?: bigint;
  hi?: bigint;
}

/** An IRTE for remapped interrupts as its two qwords. */
export function irte(f: IrteFields = {}): [lo: bigint, hi: bigint] {
  const lo = (f.present === false ? 0n : 1n) | (f.fpd ? 2n : 0n) | (BigInt(f.dm ?? 0) << 2n) | (BigInt(f.rh ?? 0) << 3n)
    | (BigInt(f.tm ?? 0) << 4n) | (BigInt(f.dlm ?? 0) << 5n) | (BigInt(f.vector ?? 0x40) << 16n) | (BigInt(f.apicId ?? 0) << 40n) | (f.lo ?? 0n);
  const hi = BigInt(f.sid ?? 0) | (BigInt(f.sq ?? 0) << 16n) | (BigInt(f.svt ?? 0) << 18n) | (f.hi ?? 0n);
  return [lo, hi];
}

/** A remappable-format MSI for interrupt `handle` (address bits 19:5, bit 2 = handle[15]); with `subhandle`, SHV set. */
export function remappable(handle: number, subhandle?: number): { address: number; data: number } {
  const address = 0xfee0_0000 | ((handle & 0x7fff) << 5) | 0x10 | (subhandle === undefined ? 0 : 0x8) | ((handle >> 15) & 1) << 2;
  return { address: address >>> 0, data: subhandle ?? 0 };
}

/** A compatibility-format MSI: destination, vector. */
export function compatibility(apicId: number, vector: number): { address: number; data: number } {
  return { address: (0xfee0_0000 | (apicId << 12)) >>> 0, data: vector };
}

export const iec = {
  global: (): Descriptor => [BigInt(DescriptorType.InterruptEntryCache), 0n],
  index: (iidx: number, im = 0): Descriptor => [BigInt(DescriptorType.InterruptEntryCache) | (1n << 4n) | (BigInt(im) << 27n) | (BigInt(iidx) << 32n), 0n],
};

/** GCMD per the spec's update sequence: the persistent status bits, with one bit set or cleared. */
export function command(m: Machine, bit: bigint, on = true): void {
  const persistent = m.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK;
  m.device.writeRegister(Reg.GCMD, 4, on ? persistent | bit : persistent & ~bit);
}

export interface IrMachine extends Machine {
  queue: Queue;
  writeIrte(index: number, entry: [bigint, bigint]): void;
  /** `interruptRequest` with number arguments. */
  send(sid: number, message: { address: number; data: number }): ReturnType<Machine["device"]["interruptRequest"]>;
}

/**
 * A unit with interrupt remapping on, set up as Linux does: QI enabled, IRTA = TABLE | S, SIRTP,
 * a global IEC invalidation, IRE. `s`: the table has 2^(s+1) entries.
 */
export function irMachine(options: Parameters<typeof machine>[0] = {}, s = 7, enable = true): IrMachine {
  const m = machine({ interruptRemapping: true, ...options });
  const queue = new Queue(m).enable();
  m.ram.direct.fill(0, TABLE, TABLE + 16 * 2 ** (s + 1));
  m.device.writeRegister(Reg.IRTA, 8, BigInt(TABLE) | BigInt(s));
  command(m, Gcmd.SIRTP);
  queue.submit(iec.global());
  if (enable) command(m, Gcmd.IRE);
  return {
    ...m,
    queue,
    writeIrte(index, [lo, hi]) {
      m.ram.write64(TABLE + index * 16, lo);
      m.ram.write64(TABLE + index * 16 + 8, hi);
    },
    send(sid, message) {
      return m.device.interruptRequest(sid, BigInt(message.address), message.data);
    },
  };
}
