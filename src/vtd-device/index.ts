/** Public API of the VT-d device model. Platform-neutral: no v86 and no node: imports below here. */
export { VtdDevice } from "./device.ts";
export { GuestRam, type GuestMemory } from "./memory/guest-memory.ts";
export { ATS_TIMEOUT_MS, type VtdOptions, type ResolvedOptions } from "./options.ts";
export { DMA_ABORT, type DmaResult } from "./dma-result.ts";
export type { DmaRequestOptions } from "./scalable/pasid-requests.ts";
export type { ScalableModeOptions } from "./scalable/scalable-options.ts";
export { NOT_AN_INTERRUPT } from "./interrupts/interrupt-remapping.ts";
export type { InterruptResult } from "./interrupts/interrupt-result.ts";
export type { TraceEvent, TraceListener } from "./trace.ts";
export type { RegisterSpec } from "./registers/register-table.ts";
export { DeviceStats } from "./stats.ts";
export { SnapshotError } from "./state/codec.ts";
export { SNAPSHOT_FORMAT, SNAPSHOT_VERSION, type SnapshotConfiguration, type VtdSnapshot } from "./state/snapshot.ts";
export { FaultReason } from "../spec/fault-reasons.ts";
export { IommuNotifiers, NotifierStats } from "./notifiers/notifiers.ts";
export type { IommuAddressSpace } from "./notifiers/address-space.ts";
export {
  NotifierFlag, NotifierError, EVENT_READ, EVENT_WRITE,
  type IommuEvent, type IommuNotifier, type NotifierErrorReport, type NotifierRange, type RegisterOptions,
} from "./notifiers/notifier-types.ts";
export {
  IOMMU_VTD_S1_SRE, IOMMU_VTD_S1_EAFE, IOMMU_VTD_S1_WPE, IOMMU_VTD_INV_FLAGS_LEAF, IOMMU_VTD_INV_ALL_PAGES,
  type NestedNotifier, type HwptAllocEvent, type HwptInvalidateEvent, type IommuHwptVtdS1, type IommuHwptVtdS1Invalidate, type NestedSpaceId,
} from "./notifiers/nested-types.ts";
export type { DriverChecker } from "./checker/checker.ts";
export type { CheckerOptions, CpuView } from "./checker/checker-options.ts";
export type {
  ContextView, DriverBugKind, DriverBugReport, EntryView, MissingAction, RawEntryView, TranslationView,
} from "./checker/checker-report.ts";
