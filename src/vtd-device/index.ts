/** Public API of the VT-d device model. Platform-neutral: no v86 and no node: imports below here. */
export { VtdDevice } from "./device.ts";
export { GuestRam, type GuestMemory } from "./guest-memory.ts";
export { ATS_TIMEOUT_MS, type VtdOptions, type ResolvedOptions } from "./options.ts";
export { DMA_ABORT, type DmaResult } from "./dma-result.ts";
export type { TraceEvent, TraceListener } from "./trace.ts";
export type { RegisterSpec } from "./register-table.ts";
export { DeviceStats } from "./stats.ts";
export { FaultReason } from "../spec/fault-reasons.ts";
