/**
 * One interface, two machines: QEMU 7.2's intel-iommu (driven through qtest) and our VtdDevice.
 * Differential tests run the same scenario code on both and compare what they observed.
 *
 * Both machines have 128 MiB of RAM, the unit at its q35 place (registers from offset 0) and edu
 * devices at 00:03.0 (requester id 0x18) and 00:04.0 (0x20). On our side edu is a stand-in that
 * moves bytes with `device.dmaRead/dmaWrite` and the edu's requester id.
 */
import {
  CONTEXT_ENTRY_SIZE, ContextHi, ContextLo, GSTS_PERSISTENT_MASK, PAGE_SIZE, PAGING_ENTRY_SIZE, Reg, ROOT_ENTRY_SIZE,
  Pte, setField,
} from "../../src/spec/index.ts";
import type { VtdDevice as VtdDeviceType, GuestRam as GuestRamType } from "../../src/vtd-device/index.ts";
import { Edu, EduOnQemu, QtestClient, findEduDevices, requesterId } from "./qtest.ts";

export interface MachineConfig {
  awBits: 39 | 48;
  cachingMode: boolean;
}

export type DmaDirection = "toDevice" | "toMemory";

export interface DmaRequest {
  sid: number;
  iova: bigint;
  length: number;
  /** toDevice: RAM → edu buffer (a DMA read); toMemory: edu buffer → RAM (a DMA write). */
  direction: DmaDirection;
  /** Offset in edu's 4 KiB buffer. */
  bufferOffset?: number;
}

export interface DmaOutcome {
  faulted: boolean;
  /** The fault reason, where the machine tells it (QEMU does not for faults suppressed by FPD). */
  reason?: number;
}

export interface Msi {
  address: bigint;
  data: number;
}

export interface RegisterMachine {
  readonly kind: "qemu" | "ours";
  readonly config: MachineConfig;
  /** Requester ids of the DMA-capable test devices, in slot order. */
  readonly eduSids: readonly number[];
  /** Power-on state: unit and devices reset, scenario memory [SCENARIO_MEMORY_BASE, +SIZE) zeroed. */
  reset(): Promise<void>;
  readRegister(offset: number, size: 4 | 8): Promise<bigint>;
  writeRegister(offset: number, size: 4 | 8, value: bigint): Promise<void>;
  readMemory(address: bigint, length: number): Promise<Uint8Array>;
  writeMemory(address: bigint, data: Uint8Array): Promise<void>;
  /** Runs one edu DMA and waits for it. */
  dma(request: DmaRequest): Promise<DmaOutcome>;
  /** MSIs the unit sent since the last call. */
  takeInterrupts(): Promise<Msi[]>;
  close(): Promise<void>;
}

export const MEMORY_SIZE = 128 << 20;
export const SCENARIO_MEMORY_BASE = 0x10_0000;
export const SCENARIO_MEMORY_SIZE = 0xf0_0000;
/** The unit's register base on q35. */
export const UNIT_BASE = 0xfed9_0000n;
export const EDU_SLOTS = [3, 4] as const;
export const EDU_SIDS = EDU_SLOTS.map((slot) => requesterId(0, slot, 0));
const EDU_BARS = [0xfea0_0000n, 0xfeb0_0000n];

function checkRegisterAccess(offset: number, size: number): void {
  if ((size !== 4 && size !== 8) || offset % size !== 0) throw new RangeError(`register access ${size}@0x${offset.toString(16)}`);
}

// ---------------------------------------------------------------------------------------------
// QEMU

const FAULT_LINE = /^vtd_dmar_fault sid 0x([0-9a-f]+) fault (\d+) addr 0x([0-9a-f]+) write (\d)/;
const FAULT_DISABLED_LINE = /^vtd_fault_disabled/;
const MSI_LINE = /^vtd_irq_generate addr 0x([0-9a-f]+) data 0x([0-9a-f]+)/;
/** A read of reserved offset 4 is the sync marker: its trace line tells that earlier lines have arrived. */
const MARKER_OFFSET = 0x4;
const MARKER_LINE = `vtd_reg_read addr 0x${MARKER_OFFSET.toString(16)} size 0x4`;

export class QemuMachine implements RegisterMachine {
  readonly kind = "qemu" as const;
  private edus = new Map<number, EduOnQemu>();
  /** stderr lines already looked at for faults and MSIs. */
  private seen = 0;
  private markersSent = 0;
  private markersSeen = 0;
  private pendingInterrupts: Msi[] = [];

  private constructor(
    readonly client: QtestClient,
    readonly config: MachineConfig,
    readonly eduSids: readonly number[],
  ) {}

  static async start(config: MachineConfig): Promise<QemuMachine> {
    const client = await QtestClient.start({
      awBits: config.awBits,
      cachingMode: config.cachingMode,
      memoryMiB: MEMORY_SIZE >> 20,
      eduSlots: EDU_SLOTS,
      traceEvents: ["vtd_dmar_fault", "vtd_fault_disabled", "vtd_irq_generate", "vtd_reg_read"],
    });
    try {
      const sids = await findEduDevices(client);
      if (sids.join() !== EDU_SIDS.join()) {
        throw new Error(`edu devices found at ${sids.map((s) => s.toString(16))}, expected ${EDU_SIDS.map((s) => s.toString(16))}`);
      }
      const machine = new QemuMachine(client, config, sids);
      await machine.enableEdus();
      return machine;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  private async enableEdus(): Promise<void> {
    this.edus.clear();
    for (const [i, sid] of this.eduSids.entries()) this.edus.set(sid, await EduOnQemu.enable(this.client, sid, EDU_BARS[i]!));
  }

  async reset(): Promise<void> {
    // A marker in FEDATA tells when the machine reset (ICH9 reset control, port 0xCF9) has happened.
    await this.writeRegister(Reg.FEDATA, 4, 0x5a5an);
    await this.client.outb(0xcf9, 0x6);
    const deadline = Date.now() + 5_000;
    while ((await this.client.readl(UNIT_BASE + BigInt(Reg.FEDATA))) !== 0n) {
      if (Date.now() > deadline) throw new Error("QEMU did not reset");
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await this.client.fillMemory(BigInt(SCENARIO_MEMORY_BASE), SCENARIO_MEMORY_SIZE, 0);
    await this.enableEdus();
    await this.sync();
    this.pendingInterrupts = [];
  }

  async readRegister(offset: number, size: 4 | 8): Promise<bigint> {
    checkRegisterAccess(offset, size);
    if (offset === MARKER_OFFSET && size === 4) this.markersSent++;
    const address = UNIT_BASE + BigInt(offset);
    return size === 4 ? this.client.readl(address) : this.client.readq(address);
  }

  async writeRegister(offset: number, size: 4 | 8, value: bigint): Promise<void> {
    checkRegisterAccess(offset, size);
    if (size === 8 && (offset === Reg.FECTL || offset === Reg.IECTL)) {
      // QEMU 7.2 asserts (and aborts) on a 64-bit write to FECTL or IECTL.
      throw new Error(`refusing a 64-bit write to 0x${offset.toString(16)}: QEMU aborts on it`);
    }
    const address = UNIT_BASE + BigInt(offset);
    if (size === 4) await this.client.writel(address, value & 0xffff_ffffn);
    else await this.client.writeq(address, BigInt.asUintN(64, value));
  }

  readMemory(address: bigint, length: number): Promise<Uint8Array> {
    return this.client.readMemory(address, length);
  }

  writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    return this.client.writeMemory(address, data);
  }

  async dma(request: DmaRequest): Promise<DmaOutcome> {
    const edu = this.edus.get(request.sid);
    if (!edu) throw new Error(`no edu with requester id 0x${request.sid.toString(16)} on QEMU`);
    await this.sync();
    const from = this.seen;
    await edu.dma(request.direction, request.iova, request.length, request.bufferOffset ?? 0);
    await this.sync();
    const outcome: DmaOutcome = { faulted: false };
    for (const line of this.client.stderrLines.slice(from, this.seen)) {
      const fault = FAULT_LINE.exec(line);
      if (fault && !outcome.faulted) {
        outcome.faulted = true;
        outcome.reason = Number(fault[2]);
      } else if (FAULT_DISABLED_LINE.test(line)) {
        outcome.faulted = true;
      }
    }
    return outcome;
  }

  async takeInterrupts(): Promise<Msi[]> {
    await this.sync();
    const taken = this.pendingInterrupts;
    this.pendingInterrupts = [];
    return taken;
  }

  /** Waits until QEMU's stderr has caught up with the commands sent so far, and scans new lines. */
  private async sync(): Promise<void> {
    await this.readRegister(MARKER_OFFSET, 4);
    const lines = this.client.stderrLines;
    for (;;) {
      while (this.seen < lines.length) {
        const line = lines[this.seen++]!;
        if (line.startsWith(MARKER_LINE)) this.markersSeen++;
        const msi = MSI_LINE.exec(line);
        if (msi) this.pendingInterrupts.push({ address: BigInt(`0x${msi[1]}`), data: Number(`0x${msi[2]}`) });
      }
      if (this.markersSeen >= this.markersSent) return;
      await this.client.waitForStderr(() => true, this.seen);
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Ours

export class OurMachine implements RegisterMachine {
  readonly kind = "ours" as const;
  readonly eduSids = EDU_SIDS;
  device!: VtdDeviceType;
  private interrupts: Msi[] = [];
  private readonly eduBuffers = new Map<number, Uint8Array>();

  private constructor(
    readonly config: MachineConfig,
    readonly memory: GuestRamType,
    private readonly createDevice: () => VtdDeviceType,
  ) {
    this.device = createDevice();
  }

  static async create(config: MachineConfig): Promise<OurMachine> {
    const { VtdDevice, GuestRam } = await import("../../src/vtd-device/index.ts");
    const memory = new GuestRam(MEMORY_SIZE);
    let machine: OurMachine | undefined = undefined;
    const onInterrupt = (address: bigint, data: number) => machine!.interrupts.push({ address, data });
    machine = new OurMachine(config, memory, () =>
      new VtdDevice({ memory, awBits: config.awBits, cachingMode: config.cachingMode, onInterrupt }),
    );
    return machine;
  }

  async reset(): Promise<void> {
    this.device = this.createDevice();
    this.memory.direct.fill(0, SCENARIO_MEMORY_BASE, SCENARIO_MEMORY_BASE + SCENARIO_MEMORY_SIZE);
    this.eduBuffers.clear();
    this.interrupts = [];
  }

  async readRegister(offset: number, size: 4 | 8): Promise<bigint> {
    checkRegisterAccess(offset, size);
    return this.device.readRegister(offset, size);
  }

  async writeRegister(offset: number, size: 4 | 8, value: bigint): Promise<void> {
    checkRegisterAccess(offset, size);
    this.device.writeRegister(offset, size, BigInt.asUintN(size * 8, value));
  }

  async readMemory(address: bigint, length: number): Promise<Uint8Array> {
    const into = new Uint8Array(length);
    if (!this.memory.read(address, into)) throw new RangeError(`read of ${length} bytes at 0x${address.toString(16)} is outside RAM`);
    return into;
  }

  async writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    if (!this.memory.write(address, data)) throw new RangeError(`write of ${data.length} bytes at 0x${address.toString(16)} is outside RAM`);
  }

  /** The edu stand-in: one request of `length` bytes through the unit, as QEMU's edu does it. */
  async dma(request: DmaRequest): Promise<DmaOutcome> {
    if (!this.eduSids.includes(request.sid)) throw new Error(`no edu with requester id 0x${request.sid.toString(16)}`);
    const offset = request.bufferOffset ?? 0;
    if (request.length <= 0 || offset < 0 || offset + request.length > Edu.BUFFER_SIZE) throw new RangeError("edu DMA outside its buffer");
    let buffer = this.eduBuffers.get(request.sid);
    if (!buffer) this.eduBuffers.set(request.sid, (buffer = new Uint8Array(Edu.BUFFER_SIZE)));
    const window = buffer.subarray(offset, offset + request.length);
    const result = request.direction === "toDevice"
      ? this.device.dmaRead(request.sid, request.iova, window)
      : this.device.dmaWrite(request.sid, request.iova, window);
    return result.ok ? { faulted: false } : { faulted: true, reason: result.reason };
  }

  async takeInterrupts(): Promise<Msi[]> {
    const taken = this.interrupts;
    this.interrupts = [];
    return taken;
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------
// What a scenario sees: a guest-side toolkit over a RegisterMachine.

export function qword(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  return bytes;
}

/** Bump allocator of 4 KiB pages in scenario memory (zeroed by reset). */
export class PageAllocator {
  private next: bigint;
  constructor(base = BigInt(SCENARIO_MEMORY_BASE)) {
    this.next = base;
  }
  page(): bigint {
    const page = this.next;
    this.next += BigInt(PAGE_SIZE);
    if (this.next > BigInt(SCENARIO_MEMORY_BASE + SCENARIO_MEMORY_SIZE)) throw new RangeError("scenario memory exhausted");
    return page;
  }
}

export interface ContextEntryFields {
  present?: boolean;
  fpd?: boolean;
  tt?: number;
  tableRoot?: bigint;
  aw?: number;
  did?: number;
  /** Raw bits ORed into the entry (for reserved-bit scenarios). */
  extraLo?: bigint;
  extraHi?: bigint;
}

export function contextEntry(f: ContextEntryFields): { lo: bigint; hi: bigint } {
  let lo = setField(0n, ContextLo.P, f.present === false ? 0 : 1);
  lo = setField(lo, ContextLo.FPD, f.fpd ? 1 : 0);
  lo = setField(lo, ContextLo.TT, f.tt ?? 0);
  lo |= (f.tableRoot ?? 0n) & ContextLo.SLPTPTR;
  let hi = setField(0n, ContextHi.AW, f.aw ?? 1);
  hi = setField(hi, ContextHi.DID, f.did ?? 1);
  return { lo: lo | (f.extraLo ?? 0n), hi: hi | (f.extraHi ?? 0n) };
}

export interface MapOptions {
  read?: boolean;
  write?: boolean;
  /** Leaf level: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
  level?: number;
  /** Raw bits ORed into the leaf entry. */
  extra?: bigint;
}

/**
 * Builds legacy-mode translation structures in guest memory through the machine, as a guest
 * driver would, and issues register commands with the VT-d §3 GCMD sequence.
 */
export class GuestTables {
  readonly pages: PageAllocator;
  readonly rootTable: bigint;
  private readonly contextTables = new Map<number, bigint>();

  constructor(readonly m: RegisterMachine, base?: bigint) {
    this.pages = new PageAllocator(base);
    this.rootTable = this.pages.page();
  }

  async writeQword(address: bigint, value: bigint): Promise<void> {
    await this.m.writeMemory(address, qword(value));
  }

  async readQword(address: bigint): Promise<bigint> {
    const bytes = await this.m.readMemory(address, 8);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  }

  /** Root entry for `bus` pointing at a new (or the existing) context table. */
  async contextTable(bus: number, extraLo = 0n, extraHi = 0n): Promise<bigint> {
    let table = this.contextTables.get(bus);
    if (table === undefined) {
      table = this.pages.page();
      this.contextTables.set(bus, table);
    }
    const entry = this.rootTable + BigInt(bus * ROOT_ENTRY_SIZE);
    await this.writeQword(entry, table | 1n | extraLo);
    await this.writeQword(entry + 8n, extraHi);
    return table;
  }

  async setContext(sid: number, fields: ContextEntryFields): Promise<void> {
    const table = await this.contextTable(sid >> 8);
    const { lo, hi } = contextEntry(fields);
    const entry = table + BigInt((sid & 0xff) * CONTEXT_ENTRY_SIZE);
    await this.writeQword(entry, lo);
    await this.writeQword(entry + 8n, hi);
  }

  /** A new, empty second-stage table for a domain (its top level). */
  newTableRoot(): bigint {
    return this.pages.page();
  }

  /**
   * Maps `iova` to `target` under `tableRoot` with a walk of `levels` levels, creating missing
   * tables (non-leaf entries get R|W). Returns the address of the leaf entry.
   */
  async map(tableRoot: bigint, levels: number, iova: bigint, target: bigint, o: MapOptions = {}): Promise<bigint> {
    const leafLevel = o.level ?? 1;
    let table = tableRoot;
    for (let level = levels; level > leafLevel; level--) {
      const entry = table + ((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * BigInt(PAGING_ENTRY_SIZE);
      const current = await this.readQword(entry);
      if ((current & 3n) === 0n) {
        const next = this.pages.page();
        await this.writeQword(entry, next | Pte.R | Pte.W);
        table = next;
      } else {
        table = current & Pte.ADDR;
      }
    }
    const leaf = table + ((iova >> BigInt(12 + 9 * (leafLevel - 1))) & 0x1ffn) * BigInt(PAGING_ENTRY_SIZE);
    let value = target | (o.read === false ? 0n : Pte.R) | (o.write === false ? 0n : Pte.W) | (o.extra ?? 0n);
    if (leafLevel > 1) value |= Pte.PS;
    await this.writeQword(leaf, value);
    return leaf;
  }

  /** GCMD with the VT-d §3 sequence: keep the persistent status bits, set or clear one command. */
  async command(bit: bigint, on = true): Promise<bigint> {
    const status = await this.m.readRegister(Reg.GSTS, 4);
    const value = on ? (status & GSTS_PERSISTENT_MASK) | bit : status & GSTS_PERSISTENT_MASK & ~bit;
    await this.m.writeRegister(Reg.GCMD, 4, value);
    return this.m.readRegister(Reg.GSTS, 4);
  }
}
