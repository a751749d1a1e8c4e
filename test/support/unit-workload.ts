/**
 * A seeded random workload for a unit, for the save/restore tests (src/vtd-device/state): tables,
 * queued invalidations (descriptors written at the tail the unit's IQT register shows), DMA,
 * faults and their clearing, CM negative entries, device-TLBs with latency, interrupt remapping,
 * the clock. Steps are data drawn from the seed alone, never from the unit's answers, so the same
 * steps can run on a unit and on one restored from its snapshot; each step's observable outcome
 * is logged for comparison.
 */
import { Gcmd, GSTS_PERSISTENT_MASK, Reg, FRCD_OFFSET } from "../../src/spec/index.ts";
import type { VtdOptions } from "../../src/vtd-device/index.ts";
import { machine, R, W, type Machine } from "./tables.ts";
import { desc, type Descriptor } from "./queue.ts";
import { iec, irte, remappable } from "./interrupt-remapping.ts";
import { mulberry32 } from "./vfio-workload.ts";

export const QUEUE_BASE = 0x80_0000;
export const IRT_BASE = 0x30_0000;
const IRT_S = 5; // 64 entries
const IOVA_BASE = 0x1000_0000;
const PAGES = 12;
const OUTPUT_BASE = 0x200_0000;

/** Devices: requester id, domain, translation type (1: device-TLB), FPD. */
const DEVICES = [
  { sid: 0x08, did: 1, tt: 0, fpd: false },
  { sid: 0x10, did: 2, tt: 0, fpd: false },
  { sid: 0x18, did: 1, tt: 1, fpd: false },
  { sid: 0x20, did: 3, tt: 0, fpd: true },
  { sid: 0x1a8, did: 4, tt: 1, fpd: false },
];

/** Addresses the steps write (pure data: the same for a unit and its restored twin). */
export interface World {
  contextEntry: number[];
  contextLow: bigint[];
  /** Per device, per page: the address of its leaf entry. */
  leaf: number[][];
}

export const WORKLOAD_OPTIONS: Partial<VtdOptions> = {
  cachingMode: true, deviceIotlb: true, deviceIotlbLatencyMs: 3, interruptRemapping: true, faultRecords: 4,
  iotlbEntries: 64, contextCacheEntries: 8, deviceIotlbEntries: 8, deviceIotlbEntriesPerEndpoint: 4, deviceIotlbPendingInvalidations: 4,
};

function command(m: Machine, bit: bigint): void {
  const persistent = m.device.readRegister(Reg.GSTS, 4) & GSTS_PERSISTENT_MASK;
  m.device.writeRegister(Reg.GCMD, 4, persistent | bit);
}

export function submit(m: Machine, ...descriptors: Descriptor[]): void {
  let tail = Number(m.device.readRegister(Reg.IQT, 8) >> 4n);
  for (const [lo, hi] of descriptors) {
    m.ram.write64(QUEUE_BASE + tail * 16, lo);
    m.ram.write64(QUEUE_BASE + tail * 16 + 8, hi);
    tail = (tail + 1) % 256;
  }
  m.device.writeRegister(Reg.IQT, 8, BigInt(tail) << 4n);
}

/**
 * Clears the queue errors as Linux does after IQE: the descriptor at the head is replaced by a
 * harmless wait, then FSTS is cleared (the next tail write resumes the queue).
 */
export function clearQueueErrors(m: Machine): void {
  const head = Number(m.device.readRegister(Reg.IQH, 8) >> 4n);
  const [lo, hi] = desc.wait({ sw: true, data: 1, address: 0x90_0200n });
  m.ram.write64(QUEUE_BASE + head * 16, lo);
  m.ram.write64(QUEUE_BASE + head * 16 + 8, hi);
  m.device.writeRegister(Reg.FSTS, 4, 0x7dn); // PFO, AFO, APF, IQE, ICE, ITE
}

/** A unit with tables for every device (leaves empty), translation, the queue and interrupt remapping on. */
export function setUp(options: Partial<VtdOptions> = WORKLOAD_OPTIONS): { m: Machine; world: World } {
  const m = machine(options);
  const world: World = { contextEntry: [], contextLow: [], leaf: [] };
  for (const d of DEVICES) {
    const root = m.tables.context(d.sid, { did: d.did, tt: d.tt, fpd: d.fpd });
    const table = m.tables.contextTable(d.sid >> 8) + (d.sid & 0xff) * 16;
    world.contextEntry.push(table);
    world.contextLow.push(m.ram.read64(table));
    const leaves: number[] = [];
    for (let p = 0; p < PAGES; p++) leaves.push(m.tables.map(root, 3, IOVA_BASE + p * 4096, 0, 0n));
    for (const at of leaves) m.ram.write64(at, 0n);
    world.leaf.push(leaves);
  }
  m.device.writeRegister(Reg.RTADDR, 8, BigInt(m.tables.root));
  command(m, Gcmd.SRTP);
  command(m, Gcmd.TE);
  m.device.writeRegister(Reg.IQT, 8, 0n);
  m.device.writeRegister(Reg.IQA, 8, BigInt(QUEUE_BASE));
  command(m, Gcmd.QIE);
  m.ram.direct.fill(0, IRT_BASE, IRT_BASE + 16 * 2 ** (IRT_S + 1));
  m.device.writeRegister(Reg.IRTA, 8, BigInt(IRT_BASE) | BigInt(IRT_S));
  command(m, Gcmd.SIRTP);
  submit(m, iec.global());
  command(m, Gcmd.IRE);
  return { m, world };
}

/** One step: a function of the unit, the world and a log. */
export type Step = (m: Machine, world: World, log: unknown[]) => void;

/** `count` steps drawn from `seed`. */
export function steps(seed: number, count: number): Step[] {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  const out: Step[] = [];
  for (let i = 0; i < count; i++) out.push(step(int, r));
  return out;
}

function step(int: (n: number) => number, r: () => number): Step {
  const d = int(DEVICES.length), page = int(PAGES), dev = DEVICES[d]!;
  const iova = IOVA_BASE + page * 4096;
  switch (int(14)) {
    case 0: case 1: {
      const output = OUTPUT_BASE + int(64) * 4096, permission = [R, W, R | W][int(3)]!;
      return (m, w) => m.ram.write64(w.leaf[d]![page]!, BigInt(output) | permission);
    }
    case 2:
      return (m, w) => m.ram.write64(w.leaf[d]![page]!, 0n);
    case 3: case 4: case 5: {
      const offset = int(4096), length = 1 + int(6000), write = r() < 0.4, fill = int(256);
      return (m, _w, log) => {
        const bytes = new Uint8Array(length).fill(fill);
        const result = write ? m.device.dmaWrite(dev.sid, iova + offset, bytes) : m.device.dmaRead(dev.sid, iova + offset, bytes);
        log.push(["dma", dev.sid, write, result, write ? undefined : Array.from(bytes.subarray(0, 64))]);
      };
    }
    case 6: {
      const pick = int(8);
      const descriptor: Descriptor = [
        desc.iotlbPage(dev.did, BigInt(iova), int(3)), desc.iotlbDomain(dev.did), desc.iotlbGlobal(), desc.contextDevice(dev.sid, dev.did),
        desc.deviceTlb(dev.sid, BigInt(iova)), desc.wait({ sw: true, if: r() < 0.5, data: int(1000), address: 0x90_0000n }),
        iec.index(int(64)), [7n, 0n] as Descriptor, // a type the unit rejects: IQE
      ][pick]!;
      return (m) => submit(m, descriptor);
    }
    case 7: {
      const ms = r() < 0.2 ? 0.25 : r() * 6;
      return (m) => m.device.advanceTime(ms);
    }
    case 8: {
      const offsets = [Reg.FSTS, Reg.GSTS, Reg.IQH, Reg.ICS, Reg.FECTL, Reg.IECTL, Reg.IQERCD, FRCD_OFFSET + 16 * int(4) + 8 * int(2)];
      const offset = offsets[int(offsets.length)]!;
      return (m, _w, log) => log.push(["read", offset, m.device.readRegister(offset, 8)]);
    }
    case 9: {
      const which = int(5);
      return (m) => {
        if (which < 4) m.device.writeRegister(FRCD_OFFSET + 16 * which + 12, 4, 0x8000_0000n);
        else clearQueueErrors(m);
      };
    }
    case 10: {
      const offset = [Reg.FECTL, Reg.IECTL, Reg.ICS][int(3)]!, value = offset === Reg.ICS ? 1n : r() < 0.5 ? 0x8000_0000n : 0n;
      return (m) => m.device.writeRegister(offset, 4, value);
    }
    case 11: {
      const index = int(64), entry = irte({ present: r() < 0.8, vector: 0x20 + int(200), apicId: int(4), svt: int(2), sid: dev.sid });
      return (m) => {
        m.ram.write64(IRT_BASE + index * 16, entry[0]);
        m.ram.write64(IRT_BASE + index * 16 + 8, entry[1]);
      };
    }
    case 12: {
      const message = remappable(int(70));
      return (m, _w, log) => {
        const ok = m.device.remapInterrupt(dev.sid, message.address, message.data);
        const i = m.device.interrupt;
        log.push(["irq", ok, i.address, i.data, i.fault]);
      };
    }
    default: {
      const present = r() < 0.85;
      return (m, w) => m.ram.write64(w.contextEntry[d]!, present ? w.contextLow[d]! : w.contextLow[d]! & ~1n);
    }
  }
}

/** A unit with the same options and a copy of `m`'s RAM (no unit state: restore it). */
export function twin(m: Machine, options: Partial<VtdOptions> = WORKLOAD_OPTIONS): Machine {
  const t = machine(options, m.ram.size);
  t.ram.direct.set(m.ram.direct);
  return t;
}

/** Runs `list` on `m`, logging each step's outcome, the interrupts sent and the trace. */
export function run(m: Machine, world: World, list: Step[]): unknown[] {
  const log: unknown[] = [];
  const sent = m.interrupts.length;
  const stop = m.device.trace.subscribe((event) => log.push(event));
  for (const s of list) s(m, world, log);
  stop();
  log.push(["interrupts", m.interrupts.slice(sent)]);
  return log;
}
