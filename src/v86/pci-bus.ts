/**
 * Our PCI functions on v86's bus 0: config space with a write rule, memory BARs that decode where
 * the guest (or SeaBIOS) puts them while Memory Space is enabled (at their reset address for a
 * BIOS-less guest), INTx through the PIIX3 routing registers, MSI injected into the local APIC,
 * and DMA through the bus's translator (the IOMMU) as the function's requester id. Every
 * interrupt is raised at a safe point, never inside a handler. Configuration mechanism #1
 * (ports 0xCF8-0xCFF) decodes as QEMU's q35 host bridge does (ConfigMechanism below), for every
 * function on the bus, v86's own included.
 */
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "../vtd-device/dma-result.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import type { BusAddress, DmaHandle, MmioRegion, PciFunctionPort, PciInterrupts } from "../devices/bus.ts";
import { buildConfigSpace, PciCommand, PciConfigSpace, PciReg, type PciFunctionIdentity } from "../devices/pci-config.ts";
import type { V86Cpu, V86Pci } from "./internals.ts";
import { isInterruptAddress } from "./lapic-msi.ts";
import { MmioWindow, MmioWindows } from "./mmio-windows.ts";
import type { SafePoints } from "./safe-point.ts";

/**
 * What translates a function's DMA: the VT-d unit (VtdDevice has this shape). The IOVA is a
 * number below 2^53 on the hot path, a bigint only at or above it (BusAddress).
 */
export interface DmaTranslator {
  dmaRead(sid: number, iova: BusAddress, into: Uint8Array): DmaResult;
  dmaWrite(sid: number, iova: BusAddress, data: Uint8Array): DmaResult;
}

/**
 * DMA without an IOMMU: the bus address is the guest-physical address. Numbers go through the
 * unit's MemoryAccess (over `memory.direct` when there is one, allocation-free for small
 * transfers, reporting writes through afterDirectWrite); a bigint address (at or above 2^53,
 * never RAM) through GuestMemory's bigint interface. False outside RAM.
 */
export function untranslatedRead(memory: MemoryAccess, address: BusAddress, into: Uint8Array): boolean {
  if (typeof address !== "number") return memory.memory.read(address, into);
  return Number.isInteger(address) && memory.readInto(address, into, 0, into.length);
}

export function untranslatedWrite(memory: MemoryAccess, address: BusAddress, data: Uint8Array): boolean {
  if (typeof address !== "number") return memory.memory.write(address, data);
  return Number.isInteger(address) && memory.writeFrom(address, data, 0, data.length);
}

/** The identity with QEMU's subsystem IDs when it names none (QEMU_SUBSYSTEM_*). */
function withQemuSubsystem(identity: PciFunctionIdentity): PciFunctionIdentity {
  if (identity.subsystemVendorId !== undefined || identity.subsystemId !== undefined) return identity;
  return { ...identity, subsystemVendorId: QEMU_SUBSYSTEM_VENDOR_ID, subsystemId: QEMU_SUBSYSTEM_ID };
}

/** PIIX3 PIRQA-D routing (config 0x60-0x63) when no BIOS programmed it: SeaBIOS's choice for PIIX. */
export const PIRQ_ROUTE_REGISTER = 0x60;
export const DEFAULT_PIRQ_ROUTING = [10, 10, 11, 11] as const;

/** PCI 3.0 §3.2.2.3.2 configuration mechanism #1. */
export const CONFIG_ADDRESS_PORT = 0xcf8;
export const CONFIG_DATA_PORT = 0xcfc;
const CONFIG_ENABLE = 0x8000_0000;
const CONFIG_SPACE_BYTES = 256;

/**
 * What SeaBIOS leaves in the command register of a function it assigned but does not drive
 * (measured: edu on QEMU 10.0's q35 reads 0x0103): I/O and memory decoding and SERR# on, bus
 * mastering off.
 */
export const FIRMWARE_COMMAND = PciCommand.IO_SPACE | PciCommand.MEMORY_SPACE | PciCommand.SERR;

/**
 * QEMU's PCI core gives every function that names no subsystem its own IDs (Red Hat/Qumranet
 * 0x1AF4, device 0x1100); edu on QEMU 10.0 reads 0x11001AF4 at 0x2C.
 */
export const QEMU_SUBSYSTEM_VENDOR_ID = 0x1af4;
export const QEMU_SUBSYSTEM_ID = 0x1100;

/** The bytes and write path of the functions on bus 0, as the configuration ports reach them. */
export interface ConfigTarget {
  /** The function's 256 bytes for bus << 8 | device << 3 | function, or undefined if none answers. */
  space(bdf: number): Uint8Array | undefined;
  /** A naturally aligned write of `size` bytes to `register` of an existing function. */
  write(bdf: number, register: number, size: 1 | 2 | 4, value: number): void;
}

/**
 * Configuration mechanism #1 as QEMU 10.0's q35 host bridge decodes it (measured with
 * test/guests/qemu-written-guest.c; docs/conformance.md, "The v86 platform"):
 * - CONFIG_ADDRESS latches every bit of a dword write, bits 1:0 included, and a dword read returns
 *   them (PCI 3.0 makes bits 1:0 read-only zero; QEMU keeps them). Narrower writes to 0xCF8-0xCFB
 *   change nothing (PCI 3.0 and QEMU); narrower reads return all ones, as PCI 3.0's "normal I/O
 *   transaction" that nothing claims (QEMU returns the register's low bytes). Port 0xCF9 is the
 *   reset control register: not handled here.
 * - A CONFIG_DATA access at port 0xCFC + n reaches register (CONFIG_ADDRESS | n) & 0xFF: the low
 *   bits of CONFIG_ADDRESS are ORed in, so a dword read with bits 1:0 = 1 returns registers 1..4.
 *   Bytes past register 0xFF read as zero and are not written.
 * - Enable (bit 31) clear, a bus other than 0 or an empty slot: reads all ones, writes dropped.
 * - A word or dword access at a port not aligned to its size (0xCFD, 0xCFE for a dword, 0xCFF)
 *   reads zero and writes nothing, as on QEMU.
 */
export class ConfigMechanism {
  /** CONFIG_ADDRESS as last written by a dword write. */
  address = 0;

  constructor(private readonly target: ConfigTarget) {}

  readAddress(port: number, size: 1 | 2 | 4): number {
    if (port === CONFIG_ADDRESS_PORT && size === 4) return this.address | 0;
    return size === 4 ? -1 : size === 2 ? 0xffff : 0xff;
  }

  writeAddress(port: number, size: 1 | 2 | 4, value: number): void {
    if (port === CONFIG_ADDRESS_PORT && size === 4) this.address = value >>> 0;
  }

  readData(port: number, size: 1 | 2 | 4): number {
    const lane = port - CONFIG_DATA_PORT;
    if (lane % size !== 0) return 0;
    const space = this.selected();
    if (!space) return size === 4 ? -1 : size === 2 ? 0xffff : 0xff;
    const register = (this.address | lane) & 0xff;
    let value = 0;
    for (let i = 0; i < size && register + i < CONFIG_SPACE_BYTES; i++) value |= space[register + i]! << (8 * i);
    return value;
  }

  writeData(port: number, size: 1 | 2 | 4, value: number): void {
    const lane = port - CONFIG_DATA_PORT;
    if (lane % size !== 0 || !this.selected()) return;
    const bdf = (this.address >>> 8) & 0xff;
    const register = (this.address | lane) & 0xff;
    if (register % size === 0) {
      this.target.write(bdf, register, size, value);
      return;
    }
    for (let i = 0; i < size && register + i < CONFIG_SPACE_BYTES; i++) this.target.write(bdf, register + i, 1, (value >>> (8 * i)) & 0xff);
  }

  /** The addressed function's bytes, if CONFIG_ADDRESS enables a cycle to a function on bus 0. */
  private selected(): Uint8Array | undefined {
    const address = this.address;
    if (!(address & CONFIG_ENABLE) || ((address >>> 16) & 0xff) !== 0) return undefined;
    return this.target.space((address >>> 8) & 0xff);
  }
}

export interface PciFunctionSpec {
  name: string;
  device: number;
  function?: number;
  identity: PciFunctionIdentity;
}

export interface AttachedPciFunction<T> {
  readonly bdf: number;
  readonly config: PciConfigSpace;
  readonly device: T;
}

interface AttachedFunction {
  name: string;
  config: PciConfigSpace;
  bars: { index: number; window: MmioWindow }[];
  device: MmioRegion;
  /** After a restore: takes the INTx level from the Interrupt Status bit v86 put back (interrupts()). */
  resyncIntx: () => void;
}

export class V86PciBus {
  private readonly pci: V86Pci;
  private readonly functions = new Map<number, AttachedFunction>();
  private readonly windows: MmioWindows;
  /** RAM as a function without an IOMMU reaches it. */
  private readonly untranslated: MemoryAccess;
  /** Ports 0xCF8-0xCFF. */
  readonly configMechanism: ConfigMechanism;
  /** No firmware will run: functions start as SeaBIOS would have left them (leaveAsFirmwareWould). */
  private firmwareLess = false;

  constructor(
    cpu: V86Cpu,
    private readonly safePoints: SafePoints,
    memory: GuestMemory,
    private readonly translator: DmaTranslator | undefined,
    /** A function's MSI (a write to the interrupt range) with its requester id, run at a safe point. */
    private readonly deliverMsi: (sid: number, address: number, data: number) => void,
  ) {
    this.pci = cpu.devices.pci;
    this.untranslated = new MemoryAccess(memory);
    this.windows = new MmioWindows(cpu);
    this.routePirqsIfUnprogrammed();
    this.filterConfigWrites();
    this.configMechanism = this.installConfigPorts(cpu);
  }

  /**
   * For a guest that no firmware runs before (multiboot without a BIOS): every function of ours,
   * attached now or later, starts as SeaBIOS leaves a function it assigned but does not drive on
   * QEMU: its BARs at their reset addresses (SeaBIOS's choice on QEMU for edu) and decoding, the
   * command register FIRMWARE_COMMAND. Never call it when a BIOS runs: it sizes the BARs itself.
   */
  leaveAsFirmwareWould(): void {
    this.firmwareLess = true;
    for (const fn of this.functions.values()) this.enableAsFirmware(fn);
  }

  /** Registers a function, creates its device with the bus port and maps its BARs. */
  attach<T extends MmioRegion>(spec: PciFunctionSpec, create: (port: PciFunctionPort) => T): AttachedPciFunction<T> {
    const fn = spec.function ?? 0;
    if (spec.device < 0 || spec.device > 31 || fn < 0 || fn > 7) throw new RangeError(`PCI ${spec.name}: device ${spec.device}.${fn} is not on bus 0`);
    const bdf = (spec.device << 3) | fn;
    if (this.pci.device_spaces[bdf]) throw new Error(`PCI ${spec.name}: 00:${spec.device.toString(16).padStart(2, "0")}.${fn} is taken`);
    const identity = withQemuSubsystem(spec.identity);
    const { bytes, writable } = buildConfigSpace(identity);
    const live = this.pci.register_device({
      name: spec.name,
      pci_id: bdf,
      pci_space: Array.from(bytes),
      pci_bars: identity.bars.map((bar) => ({ size: bar.size })),
    });
    const config = new PciConfigSpace(new Uint8Array(live.buffer, live.byteOffset, 256), writable, identity);
    if (config.interruptPin !== 0) config.setInterruptLine(this.routedIrq(bdf, config.interruptPin));
    const intx = { resync: () => {} };
    const device = create({
      dma: this.dmaHandle(bdf, config),
      interrupts: this.interrupts(bdf, config, intx),
      scheduler: { after: (delayMs, action) => this.safePoints.defer(action, delayMs) },
    });
    const attached: AttachedFunction = {
      name: spec.name, config, bars: identity.bars.map((bar) => ({ index: bar.index, window: new MmioWindow(bar.size, device) })), device, resyncIntx: intx.resync,
    };
    this.functions.set(bdf, attached);
    if (this.firmwareLess) this.enableAsFirmware(attached);
    this.decodeBars(attached);
    return { bdf, config, device };
  }

  /** The attached functions in the order attached, with their requester ids (save and restore: attach-state.ts). */
  attachedFunctions(): { bdf: number; name: string; device: MmioRegion }[] {
    return Array.from(this.functions, ([bdf, fn]) => ({ bdf, name: fn.name, device: fn.device }));
  }

  /**
   * After v86 restored config spaces and interrupt controllers: each function's INTx level is
   * its Interrupt Status bit again (v86 has the line's level already; nothing is raised or lowered).
   */
  resyncAfterRestore(): void {
    for (const fn of this.functions.values()) fn.resyncIntx();
  }

  /** Where a function's BAR decodes now (undefined: Memory Space off, or not mapped). */
  barWindow(bdf: number, index: number): number | undefined {
    return this.functions.get(bdf)?.bars.find((b) => b.index === index)?.window.address;
  }

  /** The IRQ the PIIX3 routes a function's pin to (v86's formula: PIRQ (pin - 1 + slot - 1) mod 4). */
  routedIrq(bdf: number, pin: number): number {
    return this.pci.isa_bridge_space8[PIRQ_ROUTE_REGISTER + ((pin - 1 + (bdf >> 3) - 1) & 3)]!;
  }

  private routePirqsIfUnprogrammed(): void {
    const bridge = this.pci.isa_bridge_space8;
    const routes = bridge.subarray(PIRQ_ROUTE_REGISTER, PIRQ_ROUTE_REGISTER + 4);
    if (routes.every((irq) => irq === 0)) routes.set(DEFAULT_PIRQ_ROUTING);
  }

  private filterConfigWrites(): void {
    const pci = this.pci;
    const original = { 1: pci.pci_write8.bind(pci), 2: pci.pci_write16.bind(pci), 4: pci.pci_write32.bind(pci) };
    const route = (size: 1 | 2 | 4) => (address: number, value: number) => {
      const fn = this.functions.get((address >> 8) & 0xffff);
      if (!fn) return original[size](address, value);
      fn.config.write(address & 0xff, size, value);
      this.decodeBars(fn); // a BAR or the command register may have changed
    };
    pci.pci_write8 = route(1);
    pci.pci_write16 = route(2);
    pci.pci_write32 = route(4);
  }

  private enableAsFirmware(fn: AttachedFunction): void {
    fn.config.write(PciReg.COMMAND, 2, fn.config.command | FIRMWARE_COMMAND);
    this.decodeBars(fn);
  }

  /**
   * Takes ports 0xCF8-0xCFF from v86 (whose CONFIG_ADDRESS drops bits 1:0, reads back a status
   * word, ignores the enable bit and answers misaligned data accesses from the aligned dword) for
   * ConfigMechanism. Reads come from the live config spaces (v86 computes nothing on a read);
   * writes go through pci_write8/16/32, so ours meet their write rule and v86's devices theirs.
   * Byte accesses to 0xCF9 stay v86's (reset control).
   */
  private installConfigPorts(cpu: V86Cpu): ConfigMechanism {
    const pci = this.pci;
    const mechanism = new ConfigMechanism({
      space: (bdf) => {
        const space = pci.device_spaces[bdf];
        return space ? new Uint8Array(space.buffer, space.byteOffset, CONFIG_SPACE_BYTES) : undefined;
      },
      write: (bdf, register, size, value) => {
        const address = (bdf << 8) | register;
        if (size === 1) pci.pci_write8(address, value);
        else if (size === 2) pci.pci_write16(address, value);
        else pci.pci_write32(address, value);
      },
    });
    const io = cpu.io;
    const owner = { name: "pci configuration mechanism #1" };
    for (const port of [CONFIG_ADDRESS_PORT, CONFIG_ADDRESS_PORT + 2, CONFIG_ADDRESS_PORT + 3]) {
      io.register_read(port, owner, () => mechanism.readAddress(port, 1), () => mechanism.readAddress(port, 2), () => mechanism.readAddress(port, 4));
      io.register_write(port, owner, (v) => mechanism.writeAddress(port, 1, v), (v) => mechanism.writeAddress(port, 2, v), (v) => mechanism.writeAddress(port, 4, v));
    }
    // 0xCF9 keeps v86's byte handlers; its word and dword ones are CONFIG_ADDRESS's misaligned neighbours.
    const resetControl = io.ports[CONFIG_ADDRESS_PORT + 1]!;
    const resetOwner = resetControl.device as object; // v86 calls its handlers with this = device
    io.register_read(CONFIG_ADDRESS_PORT + 1, resetOwner, resetControl.read8, () => mechanism.readAddress(CONFIG_ADDRESS_PORT + 1, 2), () => mechanism.readAddress(CONFIG_ADDRESS_PORT + 1, 4));
    io.register_write(CONFIG_ADDRESS_PORT + 1, resetOwner, resetControl.write8, () => {}, () => {});
    for (let port = CONFIG_DATA_PORT; port < CONFIG_DATA_PORT + 4; port++) {
      io.register_read(port, owner, () => mechanism.readData(port, 1), () => mechanism.readData(port, 2), () => mechanism.readData(port, 4));
      io.register_write(port, owner, (v) => mechanism.writeData(port, 1, v), (v) => mechanism.writeData(port, 2, v), (v) => mechanism.writeData(port, 4, v));
    }
    return mechanism;
  }

  private dmaHandle(bdf: number, config: PciConfigSpace): DmaHandle {
    const translator = this.translator;
    const memory = this.untranslated;
    const abort = dmaFailure(DMA_ABORT);
    return {
      sourceId: bdf,
      read(iova, into) {
        if (!config.busMaster) return abort;
        if (translator) return translator.dmaRead(bdf, iova, into);
        return untranslatedRead(memory, iova, into) ? DMA_OK : abort;
      },
      write(iova, data) {
        if (!config.busMaster) return abort;
        if (translator) return translator.dmaWrite(bdf, iova, data);
        return untranslatedWrite(memory, iova, data) ? DMA_OK : abort;
      },
    };
  }

  private interrupts(bdf: number, config: PciConfigSpace, intx: { resync: () => void }): PciInterrupts {
    let asserted = false;
    let driven = false;
    intx.resync = () => {
      asserted = config.interruptStatus;
      driven = asserted && !config.intxDisabled;
    };
    const apply = () => {
      const level = asserted && !config.intxDisabled;
      config.setInterruptStatus(asserted);
      if (level === driven) return;
      driven = level;
      if (level) this.pci.raise_irq(bdf);
      else this.pci.lower_irq(bdf);
    };
    return {
      msiEnabled: () => config.msiEnabled,
      sendMsi: () => {
        const { address, data } = config.msi;
        if (!config.busMaster) return; // an MSI is a memory write: no bus mastering, no message
        if (isInterruptAddress(address)) {
          const interruptAddress = Number(address);
          this.safePoints.defer(() => this.deliverMsi(bdf, interruptAddress, data));
        } else {
          const bytes = new Uint8Array(4);
          new DataView(bytes.buffer).setUint32(0, data, true);
          this.safePoints.defer(() => this.dmaHandle(bdf, config).write(address, bytes));
        }
      },
      setIntx: (level) => {
        asserted = level;
        this.safePoints.defer(apply);
      },
    };
  }

  /** PCI 3.0 §6.2.2: memory BARs decode at their programmed address while Memory Space is on. */
  private decodeBars(fn: AttachedFunction): void {
    const on = fn.config.memorySpace;
    for (const bar of fn.bars) this.windows.place(bar.window, on ? fn.config.barAddress(bar.index) : undefined);
  }
}
