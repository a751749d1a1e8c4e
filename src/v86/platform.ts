/**
 * The project's platform on a v86 machine: the VT-d unit at 0xFED90000 with its interrupts
 * delivered to the LAPIC, the PCI bus with the unit as DMA translator, the edu device at 00:04.0,
 * and the DMAR table handed to the guest (in RAM for BIOS-less boots, through fw_cfg for SeaBIOS).
 */
import { buildDmar, type PciEndpoint } from "../acpi/dmar.ts";
import { DmarFlags } from "../spec/dmar.ts";
import { IOAPIC_ID, IOAPIC_SOURCE } from "../spec/platform.ts";
import { buildMadt } from "../acpi/madt.ts";
import { EduDevice, eduPciIdentity } from "../devices/edu.ts";
import { Cap, Ecap, getField, Reg } from "../spec/index.ts";
import { VtdDevice, type VtdOptions } from "../vtd-device/index.ts";
import { installAcpiTablesInRam, serveFwCfgAcpiTables } from "./acpi-install.ts";
import { IoApicRemapping } from "./ioapic-remapping.ts";
import { deliverMsiToLapic } from "./lapic-msi.ts";
import type { Machine } from "./machine.ts";
import { V86PciBus, type DmaTranslator } from "./pci-bus.ts";
import { mapVtdUnit, VTD_UNIT_BASE } from "./unit-mmio.ts";

/** Our PCI slots, free in v86 (it uses slots 0, 1, 5, 7, 0x12, 0x1e and 6/0xa/0xb/0xc for virtio). */
export const EDU_PCI_SLOT = 4;
/** INTA# of slot 9 routes to PIRQA (IRQ 10 in SeaBIOS's PIIX routing), not edu's IRQ 11. */
export const VIRTIO_BLK_PCI_SLOT = 9;
/** Where QEMU's SeaBIOS put edu's BAR0; below the VGA BIOS block at 0xFEB00000. */
export const EDU_BAR0_ADDRESS = 0xfea0_0000;

export interface PlatformOptions {
  vtd?: Omit<VtdOptions, "memory" | "onInterrupt">;
  eduDmaDelayMs?: number;
  /** edu's DMA mask applied to bus addresses. Default (1 << 28) - 1, as QEMU's edu. */
  eduDmaMask?: bigint;
  /** BIOS-less boot: write RSDP/RSDT/MADT/DMAR to 0xE0000. Default true. */
  acpiInRam?: boolean;
  /** Multiboot information structure to reserve the ACPI area in (EBX at the guest's entry). */
  multibootInfoAddress?: number;
  /** SeaBIOS boot: serve the DMAR as fw_cfg item 0x8000. Default false. */
  acpiThroughFwCfg?: boolean;
  /**
   * Sees every MSI (the unit's and the devices') before the LAPIC does; returning true consumes
   * it. A host-side driver (the guest driver's v86 platform) registers its handlers here.
   */
  msiListener?: (address: bigint, data: number) => boolean;
  /** Attaches more PCI functions of this project; returns their endpoints for the DMAR's DRHD scope. */
  attachDevices?: (bus: V86PciBus) => PciEndpoint[];
  /**
   * Puts something between the PCI functions and the unit: every DMA of every function goes to
   * what this returns (given the unit). Tests use it for a second DMA path (a VFIO-like shadow).
   */
  interposeDma?: (unit: VtdDevice) => DmaTranslator;
}

export interface Platform {
  device: VtdDevice;
  edu: EduDevice;
  bus: V86PciBus;
  dmar: Uint8Array;
  /** The I/O APIC's lines, through the unit's interrupt remapping. */
  ioApic: IoApicRemapping;
  /** MSIs that could not be delivered (bad address, unsupported delivery mode, vector < 16). */
  undeliveredMsis: number;
}

export function installPlatform(machine: Machine, options: PlatformOptions = {}): Platform {
  const { cpu, safePoints, memory } = machine;
  let undelivered = 0;
  const listener = options.msiListener;
  /** A compatibility-format MSI reaches the CPU (a host-side listener first). */
  const deliver = (address: number, data: number) => {
    if (listener?.(BigInt(address), data)) return;
    if (deliverMsiToLapic(cpu, address, data) !== "delivered") undelivered++;
  };
  const device = new VtdDevice({
    // v86 reports the guest's CLFLUSHes: with ECAP.C = 0 the unit sees table stores once flushed.
    cacheLineFlushes: true,
    ...options.vtd,
    memory,
    // The unit's own events (fault, completion) are not remapped (VT-d §5.1.6). It raises them
    // from register writes, i.e. inside MMIO handlers: defer them.
    onInterrupt: (address, data) => safePoints.defer(() => deliver(Number(address), data)),
  });
  // The guest's CLFLUSHes reach the unit (its ECAP.C = 0 model, option cacheLineFlushes).
  machine.clflush.physicalListener = (address) => device.cacheLineFlushed(address);
  // The unit's clock is v86's: host time, or guest instructions on a deterministic machine.
  safePoints.onTick((elapsedMs) => device.advanceTime(elapsedMs));
  mapVtdUnit(cpu.io, device, VTD_UNIT_BASE);

  // Our functions' MSIs are interrupt requests with their requester id (VT-d §5.1.4), delivered
  // as the unit remaps them (or unchanged with remapping off); a blocked one is its fault.
  const deviceMsi = (sid: number, address: number, data: number) => {
    if (device.remapInterrupt(sid, address, data)) deliver(device.interrupt.address, device.interrupt.data);
  };
  const bus = new V86PciBus(cpu, safePoints, memory, options.interposeDma ? options.interposeDma(device) : device, deviceMsi);
  const ioApic = new IoApicRemapping(cpu, safePoints, device, deliver);
  const edu = bus.attach({ name: "edu", device: EDU_PCI_SLOT, identity: eduPciIdentity(EDU_BAR0_ADDRESS) }, (port) =>
    new EduDevice({ port, dmaDelayMs: options.eduDmaDelayMs ?? 0, ...(options.eduDmaMask !== undefined ? { dmaMask: options.eduDmaMask } : {}) }),
  );

  const endpoints: PciEndpoint[] = [{ bus: 0, dev: EDU_PCI_SLOT, fn: 0 }, ...(options.attachDevices?.(bus) ?? [])];
  const mgaw = Number(getField(device.readRegister(Reg.CAP, 8), Cap.MGAW)) + 1;
  const remapping = getField(device.readRegister(Reg.ECAP, 8), Ecap.IR) === 1n;
  const dmar = buildDmar({
    hostAddressWidth: mgaw,
    unitBase: VTD_UNIT_BASE,
    deviceScopes: endpoints,
    // As QEMU's q35 with intremap=on: the flag, and the I/O APIC under the unit.
    ...(remapping ? { flags: DmarFlags.INTR_REMAP, ioApics: [{ ioApicId: IOAPIC_ID, ...IOAPIC_SOURCE }] } : {}),
  });
  if (options.acpiInRam ?? true) installAcpiTablesInRam(memory, [buildMadt(), dmar], options.multibootInfoAddress);
  if (options.acpiThroughFwCfg) serveFwCfgAcpiTables(cpu, [dmar]);

  const platform: Platform = {
    device,
    edu: edu.device,
    bus,
    dmar,
    ioApic,
    get undeliveredMsis() {
      return undelivered;
    },
  };
  return platform;
}
