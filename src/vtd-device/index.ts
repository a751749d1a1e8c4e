/** Public API of the VT-d device model. Platform-neutral: no v86 and no node: imports below here. */
export { VtdDevice } from "./device.ts";
export { GuestRam, type GuestMemory } from "./guest-memory.ts";
export { ATS_TIMEOUT_MS, type VtdOptions, type ResolvedOptions } from "./options.ts";
export { DMA_ABORT, type DmaResult } from "./dma-result.ts";
export type { TraceEvent, TraceListener } from "./trace.ts";
export type { RegisterSpec } from "./register-table.ts";
export { DeviceStats } from "./stats.ts";
export { FaultReason } from "../spec/fault-reasons.ts";
export { IommuNotifiers, NotifierStats } from "./notifiers.ts";
export type { IommuAddressSpace } from "./address-space.ts";
export {
  NotifierFlag, NotifierError, EVENT_READ, EVENT_WRITE,
  type IommuEvent, type IommuNotifier, type NotifierErrorReport, type NotifierRange, type RegisterOptions,
} from "./notifier-types.ts";
export type { DriverChecker } from "./checker.ts";
export type { CheckerOptions, CpuView } from "./checker-options.ts";
export type {
  ContextView, DriverBugKind, DriverBugReport, EntryView, MissingAction, RawEntryView, TranslationView,
} from "./checker-report.ts";
