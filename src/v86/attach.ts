/**
 * Adding the VT-d unit to a V86 the user created with their own options (BIOS, disks, memory,
 * network):
 *
 *   const emulator = new V86({ ...theirs, acpi: true, autostart: false, wasm_fn: vtdWasm(module) });
 *   emulator.add_listener("emulator-loaded", () => {
 *     const vtd = attachVtd(emulator, { cachingMode: true });
 *     emulator.add_listener("vtd-fault", (fault) => console.log(fault));
 *     emulator.run();
 *   });
 *
 * What it adds: the unit's registers at 0xFED90000 (MMIO), the DMAR (in the ACPI tables in RAM for a
 * multiboot boot without BIOS, through fw_cfg for SeaBIOS, which adds it to its own tables), the
 * edu function whose DMA goes through the unit (and the caller's functions: `attachDevices`),
 * interrupt delivery to the local APIC at safe points, the CLFLUSH support (from `vtdWasm`), v86
 * events (attach-events.ts), and the unit's state inside v86's save_state/restore_state
 * (attach-state.ts). All the platform work is installPlatform's (platform.ts): attachVtd finds or
 * builds the Machine around the emulator (safe points, clocks) and calls it.
 * No node: imports (usable from a page).
 */
import type { EduDevice } from "../devices/edu.ts";
import type { VtdDevice, VtdOptions } from "../vtd-device/index.ts";
import { checkEventSource, VtdEvents, type V86EventSource } from "./attach-events.ts";
import { installSaveRestore } from "./attach-state.ts";
import { recordV86 } from "./attach-undo.ts";
import { assertInternals, type V86Cpu, type V86Emulator } from "./internals.ts";
import { Machine } from "./machine.ts";
import { provideMemoryFields } from "./multiboot.ts";
import { installPlatform, type Platform, type PlatformOptions } from "./platform.ts";
import type { V86PciBus } from "./pci-bus.ts";
import { VTD_UNIT_BASE } from "./unit-mmio.ts";
import { V86_VERSION } from "./wasm-patch.ts";

/** EAX at the entry of a multiboot kernel (Multiboot 0.6.96 §3.2): v86 sets it when it loaded one without a BIOS. */
const MULTIBOOT_BOOTLOADER_MAGIC = 0x2bad_b002;
const MMIO_BLOCK_SHIFT = 17;

export interface AttachVtdOptions extends Omit<VtdOptions, "memory" | "onInterrupt"> {
  /**
   * How the guest gets its DMAR: "ram" writes RSDP/RSDT/MADT/DMAR at 0xE0000 (a multiboot kernel
   * booted without BIOS), "fw_cfg" serves it as fw_cfg item 0x8000 for SeaBIOS. Default "auto":
   * "ram" when v86 loaded a multiboot kernel without BIOS, else "fw_cfg".
   */
  acpi?: "auto" | "ram" | "fw_cfg";
  /** edu's DMA completion delay on the guest's clock, ms. Default 0 (the next safe point). */
  eduDmaDelayMs?: number;
  /** edu's DMA mask. Default (1 << 28) - 1, as QEMU's edu. */
  eduDmaMask?: bigint;
  /** More PCI functions of this project, their DMA through the unit (installPlatform's option). */
  attachDevices?: PlatformOptions["attachDevices"];
  /** Something between the functions' DMA and the unit (installPlatform's option). */
  interposeDma?: PlatformOptions["interposeDma"];
  /** Sees every MSI before the local APIC (installPlatform's option). */
  msiListener?: PlatformOptions["msiListener"];
}

/** What attachVtd returns: the unit and what it sits in. */
export interface VtdAttachment {
  readonly unit: VtdDevice;
  readonly edu: EduDevice;
  readonly bus: V86PciBus;
  /** The DMAR table the guest was given. */
  readonly dmar: Uint8Array;
  readonly acpi: "ram" | "fw_cfg";
  /** The host side around the emulator: safe points, guest memory, clocks, CLFLUSH count. */
  readonly machine: Machine;
  readonly platform: Platform;
  /**
   * Takes the unit out: v86's handlers, ports, timers and PCI bus are put back as they were before
   * attachVtd (our functions leave the bus), events stop. Guest RAM keeps what was written to it.
   */
  detach(): void;
}

const attached = new WeakSet<object>();

/** The handler v86 gives unmapped memory: the one most blocks above RAM have. */
function unmappedHandler(cpu: V86Cpu): unknown {
  const maps = (cpu as unknown as { memory_map_read8: unknown[] }).memory_map_read8;
  const counts = new Map<unknown, number>();
  for (let index = Math.ceil((cpu.memory_size[0]! >>> 0) / (1 << MMIO_BLOCK_SHIFT)); index < maps.length; index++) {
    counts.set(maps[index], (counts.get(maps[index]) ?? 0) + 1);
  }
  let best: unknown;
  let most = 0;
  for (const [handler, count] of counts) if (count > most) [best, most] = [handler, count];
  return best;
}

function refuse(why: string): never {
  throw new Error(`attachVtd: ${why}`);
}

/** Checks that the unit can go into this emulator now; returns its CPU. */
function checkEmulator(emulator: V86Emulator): V86Cpu {
  if (typeof emulator !== "object" || emulator === null) refuse("expected a V86 instance");
  if (attached.has(emulator)) refuse("a VT-d unit is already attached to this emulator (detach it first)");
  if (!emulator.v86?.cpu) refuse(`the emulator is not loaded yet: call attachVtd from the "emulator-loaded" listener`);
  const cpu = assertInternals(emulator);
  const events = checkEventSource(emulator);
  if (events) refuse(`v86 internals missing (expected v86 ${V86_VERSION}): ${events}`);
  if (!cpu.devices.acpi) refuse("the emulator has no ACPI (LAPIC/IOAPIC): create it with new V86({ acpi: true, ... })");
  if ((cpu.instruction_counter[0]! >>> 0) !== 0) {
    refuse("the guest is already running: attach before it starts (autostart: false, or from the \"emulator-loaded\" listener before run())");
  }
  const maps = (cpu as unknown as { memory_map_read8: unknown[] }).memory_map_read8;
  if (VTD_UNIT_BASE < (cpu.memory_size[0]! >>> 0)) refuse(`guest RAM reaches 0x${VTD_UNIT_BASE.toString(16)}, where the unit's registers go: use less memory`);
  if (maps[VTD_UNIT_BASE >>> MMIO_BLOCK_SHIFT] !== unmappedHandler(cpu)) {
    refuse(`something is already mapped at 0x${VTD_UNIT_BASE.toString(16)} (the 128 KiB block holding the unit's registers)`);
  }
  return cpu;
}

export function attachVtd(emulator: V86Emulator, options: AttachVtdOptions = {}): VtdAttachment {
  const cpu = checkEmulator(emulator);
  const { acpi = "auto", eduDmaDelayMs, eduDmaMask, attachDevices, interposeDma, msiListener, ...vtd } = options;
  if (acpi !== "auto" && acpi !== "ram" && acpi !== "fw_cfg") refuse(`option acpi: expected "auto", "ram" or "fw_cfg", got ${String(acpi)}`);
  const multiboot = (cpu.reg32[0]! >>> 0) === MULTIBOOT_BOOTLOADER_MAGIC;
  const where = acpi === "auto" ? (multiboot ? "ram" : "fw_cfg") : acpi;
  const multibootInfoAddress = multiboot ? cpu.reg32[3]! >>> 0 : undefined;

  const restoreV86 = recordV86(emulator, cpu);
  let machine: Machine | undefined;
  let ownMachine = false;
  try {
    ownMachine = !Machine.existsAround(emulator);
    machine = Machine.around(emulator);
    const before = new Set(cpu.devices.pci.device_spaces.flatMap((space, bdf) => (space ? [bdf] : [])));
    const platform = installPlatform(machine, {
      vtd,
      ...(eduDmaDelayMs !== undefined ? { eduDmaDelayMs } : {}),
      ...(eduDmaMask !== undefined ? { eduDmaMask } : {}),
      ...(attachDevices ? { attachDevices } : {}),
      ...(interposeDma ? { interposeDma } : {}),
      ...(msiListener ? { msiListener } : {}),
      acpiInRam: where === "ram",
      acpiThroughFwCfg: where === "fw_cfg",
      ...(multibootInfoAddress !== undefined && where === "ram" ? { multibootInfoAddress } : {}),
    });
    if (multibootInfoAddress !== undefined) {
      // No firmware runs: hand the guest what QEMU's multiboot loader and SeaBIOS would have.
      provideMemoryFields(machine.memory, multibootInfoAddress, cpu.memory_size[0]! >>> 0);
      platform.bus.leaveAsFirmwareWould();
    }
    const events = new VtdEvents(emulator as unknown as V86EventSource, platform.device);
    const ownFunctions = cpu.devices.pci.device_spaces.flatMap((space, bdf) => (space && !before.has(bdf) ? [bdf] : []));
    installSaveRestore(cpu, machine, platform, vtd, ownFunctions);
    attached.add(emulator);
    const theMachine = machine;
    let detached = false;
    return {
      unit: platform.device,
      edu: platform.edu,
      bus: platform.bus,
      dmar: platform.dmar,
      acpi: where,
      machine: theMachine,
      platform,
      detach() {
        if (detached) return;
        detached = true;
        events.close();
        if (ownMachine) theMachine.dispose();
        restoreV86();
        attached.delete(emulator);
      },
    };
  } catch (error) {
    if (ownMachine) machine?.dispose();
    restoreV86();
    throw error;
  }
}
