/** The guest-side VT-d driver: public API. */
export { VtdDriver, type Access, type AttachOptions, type MapOptions, type PageSize, type DriverCreateOptions, type InterruptTarget, type RemappedInterrupt } from "./driver.ts";
export { Domain, RID_PASID, type DomainStage } from "./domain.ts";
export type { Translation } from "./domain-page-tables.ts";
export type { DriverOptions, DriverRule, FaultRecord, QueueErrorReport, UnmapMode } from "./options.ts";
export { DriverCounters } from "./counters.ts";
export { VtdDriverError, type DriverErrorCode } from "./errors.ts";
export { parseDmar, probeUnit, decodeCapabilities, type UnitCapabilities, type DmarTableInfo, type DmarUnit } from "./discovery.ts";
export type { InvalidationRequest } from "./invalidation.ts";
export type { Platform, PhysicalMemory, Mmio, PageAllocator, CpuCache, RecordedCpuCache, InterruptController, Clock, MsiMessage } from "./platform.ts";
export { InProcessPlatform, IN_PROCESS_UNIT_BASE, type InProcessOptions } from "./in-process-platform.ts";
