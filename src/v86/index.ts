/**
 * The unit on v86, as a package entry (`v86-vtd/v86`): a v86 machine with CLFLUSH support and
 * safe points (Machine), the platform that puts the unit, the PCI bus and edu on it and hands the
 * guest its DMAR (installPlatform), a whole multiboot run (runMultibootGuest), and the guest
 * driver's platform on a running machine (V86DriverPlatform, with IdleGuest to keep the CPU going).
 *
 * Everything here but `runMultibootGuest` and `patchedV86Module` is free of node: imports; those
 * two read v86.wasm from the installed v86 package (Node only). In a browser, fetch v86.wasm,
 * patch it with `patchV86Wasm`, compile it and pass it to `Machine.create({ wasmModule })`.
 */
export {
  Machine, DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES, INITRD_ADDRESS,
  type MachineOptions, type MachineOutcome, type StopReason,
} from "./machine.ts";
export type { DeterministicOptions } from "./virtual-clock.ts";
export {
  installPlatform, EDU_PCI_SLOT, VIRTIO_BLK_PCI_SLOT, EDU_BAR0_ADDRESS,
  type Platform, type PlatformOptions,
} from "./platform.ts";
export { V86PciBus, type AttachedPciFunction, type DmaTranslator, type PciFunctionSpec } from "./pci-bus.ts";
export { mapVtdUnit, VTD_UNIT_BASE, VTD_REGISTER_PAGE_SIZE } from "./unit-mmio.ts";
export { deliverMsiToLapic, isInterruptAddress, MSI_ADDRESS_BASE, type MsiOutcome } from "./lapic-msi.ts";
export { patchClflush, patchV86Wasm, V86_VERSION } from "./wasm-patch.ts";
export { runMultibootGuest, DEFAULT_TIMEOUT_MS, type RunGuestOptions, type RunGuestResult } from "./run-guest.ts";
export { patchedV86Module, readV86Wasm } from "./v86-wasm.node.ts";
export {
  V86DriverPlatform, DEFAULT_ALLOCATOR_BASE, DEFAULT_ALLOCATOR_BYTES,
  type V86DriverPlatformOptions,
} from "./driver-platform.ts";
export { IdleGuest, idleGuestImage } from "./idle-guest.ts";
