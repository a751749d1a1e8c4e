/**
 * Our PCI functions on v86's bus 0: config space with a write rule, memory BARs that decode where
 * the guest (or SeaBIOS) puts them while Memory Space is enabled (at their reset address for a
 * BIOS-less guest), INTx through the PIIX3 routing registers, MSI injected into the local APIC,
 * and DMA through the bus's translator (the IOMMU) as the function's requester id. Every
 * interrupt is raised at a safe point, never inside a handler.
 */
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "../vtd-device/dma-result.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import type { BusAddress, DmaHandle, MmioRegion, PciFunctionPort, PciInterrupts } from "../devices/bus.ts";
import { buildConfigSpace, PciConfigSpace, type PciFunctionIdentity } from "../devices/pci-config.ts";
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

/** PIIX3 PIRQA-D routing (config 0x60-0x63) when no BIOS programmed it: SeaBIOS's choice for PIIX. */
export const PIRQ_ROUTE_REGISTER = 0x60;
export const DEFAULT_PIRQ_ROUTING = [10, 10, 11, 11] as const;

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
  config: PciConfigSpace;
  bars: { index: number; window: MmioWindow }[];
}

export class V86PciBus {
  private readonly pci: V86Pci;
  private readonly functions = new Map<number, AttachedFunction>();
  private readonly windows: MmioWindows;
  /** RAM as a function without an IOMMU reaches it. */
  private readonly untranslated: MemoryAccess;

  constructor(
    cpu: V86Cpu,
    private readonly safePoints: SafePoints,
    memory: GuestMemory,
    private readonly translator: DmaTranslator | undefined,
    /** Delivers an MSI at a safe point (the platform's LAPIC injection). */
    private readonly deliverMsi: (address: bigint, data: number) => void,
  ) {
    this.pci = cpu.devices.pci;
    this.untranslated = new MemoryAccess(memory);
    this.windows = new MmioWindows(cpu);
    this.routePirqsIfUnprogrammed();
    this.filterConfigWrites();
  }

  /** Registers a function, creates its device with the bus port and maps its BARs. */
  attach<T extends MmioRegion>(spec: PciFunctionSpec, create: (port: PciFunctionPort) => T): AttachedPciFunction<T> {
    const fn = spec.function ?? 0;
    if (spec.device < 0 || spec.device > 31 || fn < 0 || fn > 7) throw new RangeError(`PCI ${spec.name}: device ${spec.device}.${fn} is not on bus 0`);
    const bdf = (spec.device << 3) | fn;
    if (this.pci.device_spaces[bdf]) throw new Error(`PCI ${spec.name}: 00:${spec.device.toString(16).padStart(2, "0")}.${fn} is taken`);
    const { bytes, writable } = buildConfigSpace(spec.identity);
    const live = this.pci.register_device({
      name: spec.name,
      pci_id: bdf,
      pci_space: Array.from(bytes),
      pci_bars: spec.identity.bars.map((bar) => ({ size: bar.size })),
    });
    const config = new PciConfigSpace(new Uint8Array(live.buffer, live.byteOffset, 256), writable, spec.identity);
    if (config.interruptPin !== 0) config.setInterruptLine(this.routedIrq(bdf, config.interruptPin));
    const device = create({
      dma: this.dmaHandle(bdf, config),
      interrupts: this.interrupts(bdf, config),
      scheduler: { after: (delayMs, action) => this.safePoints.defer(action, delayMs) },
    });
    const attached = { config, bars: spec.identity.bars.map((bar) => ({ index: bar.index, window: new MmioWindow(bar.size, device) })) };
    this.functions.set(bdf, attached);
    this.decodeBars(attached);
    return { bdf, config, device };
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

  private interrupts(bdf: number, config: PciConfigSpace): PciInterrupts {
    let asserted = false;
    let driven = false;
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
          this.safePoints.defer(() => this.deliverMsi(address, data));
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
