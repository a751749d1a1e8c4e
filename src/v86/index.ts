/**
 * The unit on v86, as a package entry (`v86-vtd/v86`), usable in a browser (no node: imports):
 * attachVtd adds the unit to a V86 the user created (with `wasm_fn: vtdWasm(module)`, module from
 * compilePatchedV86); Machine is this project's own v86 machine (safe points, clocks, a run to the
 * guest's exit), installPlatform what attachVtd calls, runMultibootGuest a whole multiboot run
 * (given the module), V86DriverPlatform the guest driver's platform on a running machine.
 *
 * Node only, in `v86-vtd/v86/node`: reading v86.wasm from the installed package
 * (patchedV86Module, readV86Wasm) and runMultibootGuest without a module.
 */
export { attachVtd, type AttachVtdOptions, type VtdAttachment } from "./attach.ts";
export { vtdWasm, compilePatchedV86, type VtdWasmOptions, type V86WasmFn } from "./attach-wasm.ts";
export { VTD_EVENTS, type VtdEventName } from "./attach-events.ts";
export { VtdStateError, MACHINE_STATE_FORMAT, MACHINE_STATE_VERSION } from "./attach-state.ts";
export {
  Machine, DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES, INITRD_ADDRESS,
  type MachineOptions, type MachineOutcome, type StopReason, type MachineState,
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
export { runMultibootGuest, DEFAULT_TIMEOUT_MS, type RunGuestOptions, type RunGuestResult } from "./attach-run.ts";
export {
  V86DriverPlatform, DEFAULT_ALLOCATOR_BASE, DEFAULT_ALLOCATOR_BYTES,
  type V86DriverPlatformOptions,
} from "./driver-platform.ts";
export { IdleGuest, idleGuestImage } from "./idle-guest.ts";
