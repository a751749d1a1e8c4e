/** What the unit counted: for tests, benchmarks and the main command's summary. */
export class DeviceStats {
  translations = 0;
  iotlbHits = 0;
  iotlbMisses = 0;
  contextHits = 0;
  contextMisses = 0;
  faultsRecorded = 0;
  faultsSuppressed = 0;
  faultsDropped = 0;
  contextInvalidations = { global: 0, domain: 0, device: 0 };
  iotlbInvalidations = { global: 0, domain: 0, page: 0 };
  deviceIotlbInvalidations = 0;
  interruptEntryCacheInvalidations = 0;
  /** Interrupt requests (`interruptRequest`): remapped through an IRTE, let through unchanged, blocked by a fault. */
  interruptsRemapped = 0;
  interruptsPassedThrough = 0;
  interruptsBlocked = 0;
  interruptEntryCacheHits = 0;
  interruptEntryCacheMisses = 0;
  invalidationWaits = 0;
  descriptorsProcessed = 0;
  /** Times the queue stopped at its work budget (queueWorkBudget) with descriptors left. */
  queueBudgetPauses = 0;
  writeBufferFlushes = 0;
  interruptsSent = 0;
  /** Interrupts whose `onInterrupt` handler threw (the unit went on). */
  interruptHandlerErrors = 0;
  registerReads = 0;
  registerWrites = 0;

  reset(): void {
    Object.assign(this, new DeviceStats());
  }
}
