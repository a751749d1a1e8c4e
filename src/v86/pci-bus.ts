/**
 * Our PCI functions on v86's bus 0: config space with a write rule, fixed memory BARs mapped by
 * the function itself (no BIOS assigns BARs), INTx through the PIIX3 routing registers, MSI
 * injected into the local APIC, and DMA through the bus's translator (the IOMMU) as the
 * function's requester id. Every interrupt is raised at a safe point, never inside a handler.
 */
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "../vtd-device/dma-result.ts";
import type { GuestMemory } from "../vtd-device/guest-memory.ts";
import type { DmaHandle, MmioRegion, PciFunctionPort, PciInterrupts } from "../devices/bus.ts";
import { buildConfigSpace, PciConfigSpace, type PciFunctionIdentity } from "../devices/pci-config.ts";
import type { V86Cpu, V86Pci } from "./internals.ts";
import { isInterruptAddress } from "./lapic-msi.ts";
import type { SafePoints } from "./safe-point.ts";

/** What translates a function's DMA: the VT-d unit (VtdDevice has this shape). */
export interface DmaTranslator {
  dmaRead(sid: number, iova: bigint, into: Uint8Array): DmaResult;
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): DmaResult;
}

/** PIIX3 PIRQA-D routing (config 0x60-0x63) when no BIOS programmed it: SeaBIOS's choice for PIIX. */
export const PIRQ_ROUTE_REGISTER = 0x60;
export const DEFAULT_PIRQ_ROUTING = [10, 10, 11, 11] as const;
const MMIO_BLOCK = 0x2_0000;

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

export class V86PciBus {
  private readonly pci: V86Pci;
  private readonly functions = new Map<number, PciConfigSpace>();

  constructor(
    private readonly cpu: V86Cpu,
    private readonly safePoints: SafePoints,
    private readonly memory: GuestMemory,
    private readonly translator: DmaTranslator | undefined,
    /** Delivers an MSI at a safe point (the platform's LAPIC injection). */
    private readonly deliverMsi: (address: bigint, data: number) => void,
  ) {
    this.pci = cpu.devices.pci;
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
    this.functions.set(bdf, config);
    if (config.interruptPin !== 0) config.setInterruptLine(this.routedIrq(bdf, config.interruptPin));
    const device = create({
      dma: this.dmaHandle(bdf, config),
      interrupts: this.interrupts(bdf, config),
      scheduler: { after: (delayMs, action) => this.safePoints.defer(action, delayMs) },
    });
    for (const bar of spec.identity.bars) this.mapBar(bar.address, bar.size, config, device);
    return { bdf, config, device };
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
      const config = this.functions.get((address >> 8) & 0xffff);
      if (config) config.write(address & 0xff, size, value);
      else original[size](address, value);
    };
    pci.pci_write8 = route(1);
    pci.pci_write16 = route(2);
    pci.pci_write32 = route(4);
  }

  private dmaHandle(bdf: number, config: PciConfigSpace): DmaHandle {
    const translator = this.translator;
    const memory = this.memory;
    const abort = dmaFailure(DMA_ABORT);
    return {
      sourceId: bdf,
      read(iova, into) {
        if (!config.busMaster) return abort;
        if (translator) return translator.dmaRead(bdf, iova, into);
        return memory.read(iova, into) ? DMA_OK : abort;
      },
      write(iova, data) {
        if (!config.busMaster) return abort;
        if (translator) return translator.dmaWrite(bdf, iova, data);
        return memory.write(iova, data) ? DMA_OK : abort;
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
      msiEnabled: () => config.msi.enabled,
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

  private mapBar(address: number, size: number, config: PciConfigSpace, region: MmioRegion): void {
    if (address % MMIO_BLOCK !== 0) throw new RangeError(`PCI BAR at 0x${address.toString(16)}: v86 maps MMIO in 128 KiB blocks`);
    const mapped = Math.ceil(size / MMIO_BLOCK) * MMIO_BLOCK;
    const offsetOf = (addr: number) => (addr - address) | 0;
    const decodes = (offset: number) => offset >= 0 && offset < size && config.memorySpace;
    this.cpu.io.mmap_register(
      address,
      mapped,
      (addr) => {
        const offset = offsetOf(addr);
        return decodes(offset) ? Number(region.readMmio(offset, 1) & 0xffn) : 0xff;
      },
      (addr, value) => {
        const offset = offsetOf(addr);
        if (decodes(offset)) region.writeMmio(offset, 1, BigInt(value & 0xff));
      },
      (addr) => {
        const offset = offsetOf(addr);
        return decodes(offset) ? Number(region.readMmio(offset, 4) & 0xffff_ffffn) | 0 : -1;
      },
      (addr, value) => {
        const offset = offsetOf(addr);
        if (decodes(offset)) region.writeMmio(offset, 4, BigInt(value >>> 0));
      },
    );
  }
}
