/**
 * A bench for driving a virtio PCI function as a driver would, without Linux: a GuestRam with the
 * real VtdDevice translating the function's DMA (its own page tables, IOVAs distinct from
 * physical addresses), a platform port with a manual scheduler and recorded interrupts, and a
 * small test-side driver (register accesses through BAR0, a split ring it fills in RAM).
 * Test-side reference: written from the virtio spec, independent of the device's code.
 */
import type { MmioRegion, PciFunctionPort } from "../../src/devices/bus.ts";
import { enableTranslation, machine, R, W, type Machine } from "./tables.ts";

/** BAR0 layout the device's capabilities announce (the tests check the capabilities say so). */
export const Bar = { COMMON: 0x0000, ISR: 0x1000, DEVICE: 0x2000, NOTIFY: 0x3000 } as const;
export const Common = {
  DFSELECT: 0x00, DF: 0x04, GFSELECT: 0x08, GF: 0x0c, MSIX: 0x10, NUMQ: 0x12, STATUS: 0x14, GENERATION: 0x15,
  Q_SELECT: 0x16, Q_SIZE: 0x18, Q_MSIX: 0x1a, Q_ENABLE: 0x1c, Q_NOFF: 0x1e, Q_DESC: 0x20, Q_AVAIL: 0x28, Q_USED: 0x30,
} as const;
export const S = { ACK: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 64, FAILED: 128 } as const;
export const F = { SEG_MAX: 2, BLK_SIZE: 6, RO: 5, FLUSH: 9, INDIRECT: 28, EVENT_IDX: 29, VERSION_1: 32, ACCESS_PLATFORM: 33 } as const;
export const bit = (n: number) => 1n << BigInt(n);

/** Where the driver's memory lives: physical [PHYS_BASE, +8 MiB), seen by the device at IOVA_BASE. */
export const PHYS_BASE = 0x80_0000;
export const IOVA_BASE = 0x4000_0000;
export const POOL_BYTES = 8 << 20;
const RAM_BYTES = 16 << 20;

/** The first offset where `a` and `b` differ, or -1 (toEqual on megabytes is slow and its diff huge). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export interface Buffer {
  /** Physical address of the buffer (the bench hands the device its IOVA). */
  phys: number;
  length: number;
  write?: boolean;
  /** The address the descriptor carries instead of the bench's IOVA of `phys` (any 64-bit value). */
  iova?: bigint;
}

export class VirtioBench {
  readonly m: Machine;
  readonly root: number;
  readonly sid: number;
  scheduled: { delayMs: number; action: () => void }[] = [];
  msiEnabled = false;
  msisSent = 0;
  intx = false;
  intxChanges = 0;
  readonly port: PciFunctionPort;
  private next = PHYS_BASE;

  /** Translation on: IOVAs are IOVA_BASE-based; off: the device sees physical addresses. */
  readonly translate: boolean;

  constructor(sid: number, options: { translate?: boolean } = {}) {
    this.sid = sid;
    this.translate = options.translate ?? true;
    this.m = machine({ awBits: 48 }, RAM_BYTES);
    this.root = this.m.tables.context(sid, { did: 1, aw: 1 });
    if (this.translate) enableTranslation(this.m);
    const device = this.m.device;
    this.port = {
      dma: { sourceId: sid, read: (iova, into) => device.dmaRead(sid, iova, into), write: (iova, data) => device.dmaWrite(sid, iova, data) },
      interrupts: {
        msiEnabled: () => this.msiEnabled,
        sendMsi: () => this.msisSent++,
        setIntx: (level) => {
          if (level !== this.intx) this.intxChanges++;
          this.intx = level;
        },
      },
      scheduler: { after: (delayMs, action) => this.scheduled.push({ delayMs, action }) },
    };
  }

  get ram(): Uint8Array {
    return this.m.ram.direct;
  }

  /** Runs the work the device scheduled (the platform's safe point). */
  run(): void {
    for (let guard = 0; this.scheduled.length > 0; guard++) {
      if (guard > 1000) throw new Error("bench: the device keeps scheduling work");
      for (const { action } of this.scheduled.splice(0)) action();
    }
  }

  /** Moves the allocator to the next page boundary (so what follows shares no page with what came before). */
  nextPage(): void {
    this.next = Math.ceil(this.next / 0x1000) * 0x1000;
  }

  /** Allocates `length` bytes of driver memory, `align`ed, mapped read/write in the IOMMU unless `map` is false. */
  alloc(length: number, align = 16, map = true): number {
    const phys = Math.ceil(this.next / align) * align;
    this.next = phys + length;
    if (this.next > PHYS_BASE + POOL_BYTES) throw new Error("bench: driver memory exhausted");
    if (map) this.map(phys, length);
    return phys;
  }

  map(phys: number, length: number, permission = R | W): void {
    for (let page = phys & ~0xfff; page < phys + length; page += 0x1000) this.m.tables.map(this.root, 3, this.iova(page), page, permission);
  }

  iova(phys: number): number {
    return this.translate ? phys - PHYS_BASE + IOVA_BASE : phys;
  }
}

/** The driver's side of one split virtqueue, in the bench's RAM. */
export class TestRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private freeHead = 0;
  private availIdx = 0;

  constructor(
    private readonly bench: VirtioBench,
    readonly size: number,
    options: { map?: boolean } = {},
  ) {
    this.desc = bench.alloc(16 * size, 16, options.map);
    this.avail = bench.alloc(6 + 2 * size, 2, options.map);
    this.used = bench.alloc(6 + 8 * size, 4, options.map);
  }

  /** Writes a chain of descriptors and makes it available; returns its head. */
  add(buffers: Buffer[], options: { flags?: number[]; next?: number[]; head?: number } = {}): number {
    const view = new DataView(this.bench.ram.buffer);
    const head = options.head ?? this.freeHead;
    buffers.forEach((b, i) => {
      const index = (head + i) % this.size;
      const at = this.desc + 16 * index;
      const last = i === buffers.length - 1;
      view.setBigUint64(at, b.iova ?? BigInt(this.bench.iova(b.phys)), true);
      view.setUint32(at + 8, b.length, true);
      view.setUint16(at + 12, options.flags?.[i] ?? ((last ? 0 : 1) | (b.write ? 2 : 0)), true);
      view.setUint16(at + 14, options.next?.[i] ?? (head + i + 1) % this.size, true);
    });
    this.freeHead = (head + buffers.length) % this.size;
    this.publish(head);
    return head;
  }

  /** Puts `head` in the available ring and bumps avail.idx. */
  publish(head: number): void {
    const view = new DataView(this.bench.ram.buffer);
    view.setUint16(this.avail + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    view.setUint16(this.avail + 2, this.availIdx, true);
  }

  setAvailIdx(value: number): void {
    new DataView(this.bench.ram.buffer).setUint16(this.avail + 2, value, true);
  }

  setAvailFlags(flags: number): void {
    new DataView(this.bench.ram.buffer).setUint16(this.avail, flags, true);
  }

  get usedIdx(): number {
    return new DataView(this.bench.ram.buffer).getUint16(this.used + 2, true);
  }

  usedElem(i: number): { id: number; len: number } {
    const view = new DataView(this.bench.ram.buffer);
    const at = this.used + 4 + 8 * (i % this.size);
    return { id: view.getUint32(at, true), len: view.getUint32(at + 4, true) };
  }
}

/** Register-level driver steps (Virtio 1.2 §3.1.1, §4.1.5) on a function's BAR0. */
export class TestDriver {
  constructor(
    private readonly device: MmioRegion,
    private readonly bench: VirtioBench,
  ) {}

  read(offset: number, size: 1 | 2 | 4): number {
    return this.device.readMmio(offset, size);
  }

  /** A 64-bit read as v86 makes it: two dword reads, low first. */
  read64(offset: number): bigint {
    const low = this.read(offset, 4);
    return (BigInt(this.read(offset + 4, 4)) << 32n) | BigInt(low);
  }

  /** A write of `size` bytes; 8 bytes go as v86 sends them: two dword writes, low first. */
  write(offset: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    if (size === 8) {
      const v = BigInt(value);
      this.device.writeMmio(offset, 4, Number(v & 0xffff_ffffn));
      this.device.writeMmio(offset + 4, 4, Number((v >> 32n) & 0xffff_ffffn));
      return;
    }
    this.device.writeMmio(offset, size, typeof value === "number" ? value : Number(BigInt.asUintN(32, value)));
  }

  /** A 16-bit write as v86 delivers it: two byte writes, low first. */
  write16AsBytes(offset: number, value: number): void {
    this.write(offset, 1, value & 0xff);
    this.write(offset + 1, 1, value >> 8);
  }

  get status(): number {
    return this.read(Bar.COMMON + Common.STATUS, 1);
  }

  setStatus(value: number): void {
    this.write(Bar.COMMON + Common.STATUS, 1, value);
  }

  addStatus(bits: number): void {
    this.setStatus(this.status | bits);
  }

  deviceFeatures(): bigint {
    this.write(Bar.COMMON + Common.DFSELECT, 4, 0);
    const low = this.read(Bar.COMMON + Common.DF, 4);
    this.write(Bar.COMMON + Common.DFSELECT, 4, 1);
    const high = this.read(Bar.COMMON + Common.DF, 4);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  writeDriverFeatures(features: bigint): void {
    this.write(Bar.COMMON + Common.GFSELECT, 4, 0);
    this.write(Bar.COMMON + Common.GF, 4, features & 0xffff_ffffn);
    this.write(Bar.COMMON + Common.GFSELECT, 4, 1);
    this.write(Bar.COMMON + Common.GF, 4, features >> 32n);
  }

  /** Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; true when the device kept FEATURES_OK. */
  negotiate(features: bigint): boolean {
    this.setStatus(0);
    this.addStatus(S.ACK);
    this.addStatus(S.DRIVER);
    this.writeDriverFeatures(features);
    this.addStatus(S.FEATURES_OK);
    return (this.status & S.FEATURES_OK) !== 0;
  }

  /** Programs queue `index` with the ring's addresses (IOVAs, 64-bit as two dwords) and enables it. */
  setupQueue(index: number, ring: TestRing, options: { enable?: boolean } = {}): void {
    this.write16AsBytes(Bar.COMMON + Common.Q_SELECT, index);
    this.write16AsBytes(Bar.COMMON + Common.Q_SIZE, ring.size);
    for (const [offset, phys] of [[Common.Q_DESC, ring.desc], [Common.Q_AVAIL, ring.avail], [Common.Q_USED, ring.used]] as const) {
      this.write(Bar.COMMON + offset, 8, this.bench.iova(phys));
    }
    if (options.enable ?? true) this.write16AsBytes(Bar.COMMON + Common.Q_ENABLE, 1);
  }

  /** Full bring-up: features, queue 0, DRIVER_OK. */
  start(ring: TestRing, features: bigint): void {
    if (!this.negotiate(features)) throw new Error("bench: FEATURES_OK refused");
    this.setupQueue(0, ring);
    this.addStatus(S.DRIVER_OK);
  }

  notify(index: number): void {
    const offset = this.read(Bar.COMMON + Common.Q_NOFF, 2); // of the selected queue
    this.write16AsBytes(Bar.NOTIFY + offset * 4, index);
  }

  readIsr(): number {
    return this.read(Bar.ISR, 1);
  }
}
