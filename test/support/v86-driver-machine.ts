/**
 * Helpers for the driver's tests and benchmark on v86 (Node: loads v86.wasm from the installed
 * package): a machine running the idle guest with the driver's v86 platform and a started driver,
 * a count of the unit's accesses at v86's memory-map dispatch, and edu driven through v86's PCI
 * ports and MMIO as a guest drives it.
 */
import { EDU_BUFFER_ADDRESS, EduDmaCommand, EduReg } from "../../src/devices/edu.ts";
import { PciCommand } from "../../src/devices/pci-config.ts";
import { IdleGuest, idleGuestImage } from "../../src/v86/idle-guest.ts";
import type { V86Cpu } from "../../src/v86/internals.ts";
import { Machine } from "../../src/v86/machine.ts";
import { EDU_BAR0_ADDRESS, EDU_PCI_SLOT } from "../../src/v86/platform.ts";
import { VTD_UNIT_BASE } from "../../src/v86/unit-mmio.ts";
import { patchedV86Module } from "../../src/v86/v86-wasm.node.ts";
import type { VtdOptions } from "../../src/vtd-device/options.ts";
import { VtdDriver, type DriverCreateOptions } from "../../src/guest-driver/driver.ts";
import type { TestMachine } from "./driver-scenarios.ts";
import { V86DriverPlatform, type V86DriverPlatformOptions } from "../../src/v86/driver-platform.ts";

const MMIO_BLOCK_SHIFT = 17;
const PCI_CONFIG_ADDRESS = 0xcf8;
const PCI_CONFIG_DATA = 0xcfc;
const PCI_COMMAND = 0x04;

/** Accesses v86's memory map dispatched to one 128 KiB MMIO block (what the guest's CPU reaches there). */
export interface MmioDispatchCount {
  reads: number;
  writes: number;
}

/** v86's memory map: per 128 KiB block, the handlers a CPU access to it is dispatched to. */
type MemoryMap = {
  memory_map_read8: ((address: number) => number)[];
  memory_map_write8: ((address: number, value: number) => void)[];
  memory_map_read32: ((address: number) => number)[];
  memory_map_write32: ((address: number, value: number) => void)[];
};

/** Counts every access v86 dispatches to the block holding `address` (wraps the block's entries in v86's map). */
export function countMmioDispatch(cpu: V86Cpu, address: number): MmioDispatchCount {
  const map = cpu as unknown as MemoryMap;
  const block = address >>> MMIO_BLOCK_SHIFT;
  const count: MmioDispatchCount = { reads: 0, writes: 0 };
  const [r8, w8, r32, w32] = [map.memory_map_read8[block]!, map.memory_map_write8[block]!, map.memory_map_read32[block]!, map.memory_map_write32[block]!];
  if (typeof r32 !== "function" || typeof w32 !== "function") throw new Error(`v86 memory map: nothing mapped at 0x${address.toString(16)}`);
  map.memory_map_read8[block] = (a) => (count.reads++, r8(a));
  map.memory_map_write8[block] = (a, v) => (count.writes++, w8(a, v));
  map.memory_map_read32[block] = (a) => (count.reads++, r32(a));
  map.memory_map_write32[block] = (a, v) => (count.writes++, w32(a, v));
  return count;
}

export interface V86TestMachine extends TestMachine<V86DriverPlatform> {
  machine: Machine;
  idle: IdleGuest;
  /** v86's dispatch of accesses to the unit's MMIO block, counted from before the driver started. */
  unitDispatch: MmioDispatchCount;
  /** Exits the idle guest and stops v86. */
  close(): Promise<void>;
}

export interface V86MachineOptions extends Omit<V86DriverPlatformOptions, "platform"> {
  /** The v86 platform's options besides the unit's (edu, ...). */
  platform?: Omit<NonNullable<V86DriverPlatformOptions["platform"]>, "vtd" | "multibootInfoAddress">;
  memoryBytes?: number;
  /** Called once v86 runs the guest, before the driver starts (e.g. to subscribe to the unit's trace). */
  beforeDriver?: (platform: V86DriverPlatform) => void;
}

/**
 * A v86 machine running the idle guest, with the driver's platform installed and a started driver.
 * The DMAR's device scope lists edu (00:04.0) and 00:05.0 (no function there: the shared scenarios'
 * second requester id, whose DMA the tests make with VtdDevice.dmaRead).
 */
export async function v86TestMachine(
  vtd: Omit<VtdOptions, "memory" | "onInterrupt"> = {},
  driverOptions: DriverCreateOptions = {},
  options: V86MachineOptions = {},
): Promise<V86TestMachine> {
  const { platform: platformOptions, beforeDriver, memoryBytes, ...rest } = options;
  const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: idleGuestImage(), memoryBytes });
  const platform = new V86DriverPlatform(machine, {
    ...rest,
    platform: {
      attachDevices: () => [{ bus: 0, dev: 5, fn: 0 }],
      ...platformOptions,
      vtd,
      multibootInfoAddress: machine.cpu.reg32[3]! >>> 0,
    },
  });
  const unitDispatch = countMmioDispatch(machine.cpu, VTD_UNIT_BASE);
  const idle = IdleGuest.start(machine);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    const outcome = await idle.exit(0);
    if (outcome.reason !== "exit" || outcome.exitCode !== 0) throw new Error(`idle guest did not exit cleanly: ${outcome.reason}, code ${outcome.exitCode}`);
  };
  try {
    await platform.nextSafePoint(); // v86 is executing the guest
    beforeDriver?.(platform);
    const driver = VtdDriver.start(platform, driverOptions);
    return { platform, driver, machine, idle, unitDispatch, close };
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
}

// ---- edu, driven as a guest drives it ----

/** Sets edu's PCI command register (memory space, bus master) through the configuration ports. */
export function enableEdu(platform: V86DriverPlatform): void {
  const ports = platform.machine.cpu.io.ports;
  const address = (0x8000_0000 | (EDU_PCI_SLOT << 11) | PCI_COMMAND) | 0;
  const select = ports[PCI_CONFIG_ADDRESS]!;
  const data = ports[PCI_CONFIG_DATA]!;
  select.write32.call(select.device, address);
  data.write16.call(data.device, PciCommand.MEMORY_SPACE | PciCommand.BUS_MASTER);
}

/**
 * One edu DMA of `count` bytes between guest memory at bus address `busAddress` (an IOVA, through
 * the unit as 00:04.0) and edu's buffer, programmed through its BAR in v86's memory map; waits
 * (letting v86 run) until the command completes. Returns whether the transfer succeeded.
 */
export async function eduDma(platform: V86DriverPlatform, direction: "from-ram" | "to-ram", busAddress: number, count: number): Promise<boolean> {
  const { mmio } = platform;
  const edu = platform.v86.edu;
  const before = { ok: edu.stats.dmaTransfers, failed: edu.stats.dmaFailures };
  const source = direction === "from-ram" ? BigInt(busAddress) : BigInt(EDU_BUFFER_ADDRESS);
  const destination = direction === "from-ram" ? BigInt(EDU_BUFFER_ADDRESS) : BigInt(busAddress);
  mmio.write64(EDU_BAR0_ADDRESS + EduReg.DMA_SOURCE, source);
  mmio.write64(EDU_BAR0_ADDRESS + EduReg.DMA_DESTINATION, destination);
  mmio.write64(EDU_BAR0_ADDRESS + EduReg.DMA_COUNT, BigInt(count));
  mmio.write32(EDU_BAR0_ADDRESS + EduReg.DMA_COMMAND, EduDmaCommand.START | (direction === "to-ram" ? EduDmaCommand.TO_RAM : 0));
  await platform.until(() => (mmio.read32(EDU_BAR0_ADDRESS + EduReg.DMA_COMMAND) & EduDmaCommand.START) === 0, "edu DMA completion");
  const after = { ok: edu.stats.dmaTransfers, failed: edu.stats.dmaFailures };
  if (after.ok + after.failed !== before.ok + before.failed + 1) throw new Error("edu: the DMA command completed without a transfer (range error?)");
  return after.ok === before.ok + 1;
}
