/** What the driver did, by kind: for tests, benchmarks and comparing CM = 0 with CM = 1. */
export class DriverCounters {
  registerReads = 0;
  registerWrites = 0;
  /** Invalidations requested, by cache and granularity (what the driver asked for). */
  contextInvalidations = { global: 0, domain: 0, device: 0 };
  iotlbInvalidations = { global: 0, domain: 0, page: 0 };
  deviceTlbInvalidations = 0;
  /** Scalable mode: PASID-cache invalidations (global, domain or PASID-selective); PASID-based IOTLB invalidations of a whole PASID or of pages. */
  pasidCacheInvalidations = 0;
  pasidIotlbInvalidations = { pasid: 0, page: 0 };
  /** Interrupt entry cache invalidations (queued only). */
  interruptEntryInvalidations = { global: 0, index: 0 };
  /** Page-selective requests that became domain-selective (CAP.PSI = 0 or mask above CAP.MAMV). */
  pageSelectiveFallbacks = 0;
  /** Queue: descriptors written, tail writes (submissions). */
  descriptorsSubmitted = 0;
  queueSubmissions = 0;
  /** CLFLUSH: calls and lines (ECAP.C = 0). */
  cacheFlushCalls = 0;
  cacheLinesFlushed = 0;
  writeBufferFlushes = 0;
  /** Waits: polled (as Linux), interrupt-driven, register handshakes; busy-wait time in platform ms. */
  syncWaits = 0;
  asyncWaits = 0;
  registerHandshakes = 0;
  pollIterations = 0;
  spunMs = 0;
  queueErrors = { iqe: 0, ite: 0, ice: 0 };
  resubmissions = 0;
  faultsReported = 0;
  mapCalls = 0;
  unmapCalls = 0;
  bytesMapped = 0;
  superpageSplits = 0;
  flushQueueFlushes = 0;

  reset(): void {
    Object.assign(this, new DriverCounters());
  }

  /** One flat record of the counters, for printing as a table row. */
  flat(): Record<string, number> {
    return {
      "reg reads": this.registerReads,
      "reg writes": this.registerWrites,
      "cc global": this.contextInvalidations.global,
      "cc domain": this.contextInvalidations.domain,
      "cc device": this.contextInvalidations.device,
      "iotlb global": this.iotlbInvalidations.global,
      "iotlb domain": this.iotlbInvalidations.domain,
      "iotlb page": this.iotlbInvalidations.page,
      "dev-tlb": this.deviceTlbInvalidations,
      "pasid-cache": this.pasidCacheInvalidations,
      "piotlb pasid": this.pasidIotlbInvalidations.pasid,
      "piotlb page": this.pasidIotlbInvalidations.page,
      "iec global": this.interruptEntryInvalidations.global,
      "iec index": this.interruptEntryInvalidations.index,
      "psi->dsi": this.pageSelectiveFallbacks,
      descriptors: this.descriptorsSubmitted,
      submissions: this.queueSubmissions,
      "clflush lines": this.cacheLinesFlushed,
      wbf: this.writeBufferFlushes,
      "sync waits": this.syncWaits,
      "async waits": this.asyncWaits,
      "reg handshakes": this.registerHandshakes,
      "spun ms": this.spunMs,
      faults: this.faultsReported,
    };
  }
}
