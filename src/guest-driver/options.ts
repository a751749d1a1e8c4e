/** The driver's configuration, and the test-only switches that break one rule each. */

/**
 * The invalidation and ordering rules the driver keeps. Each can be suppressed (test-only) so a
 * test can show what the unit then does.
 */
export type DriverRule =
  /** CM = 1, context entry not-present -> present: device-selective context invalidation with DID 0, then a domain-selective IOTLB invalidation. */
  | "cm-context-invalidation"
  /** CM = 1: a page-selective IOTLB invalidation of every new mapping. */
  | "cm-map-invalidation"
  /** CM = 0 with CAP.RWBF: a write-buffer flush after table updates that no invalidation follows. */
  | "write-buffer-flush"
  /** ECAP.C = 0: every root, context and page-table store flushed from the CPU cache before the unit may see it. */
  | "cpu-cache-flush"
  /** A change to a present entry (unmap, detach) is invalidated before the IOVA or device is reused. */
  | "unmap-invalidation"
  /** Lazy mode: an IOVA freed by unmap is reused only after the flush that invalidated it. */
  | "deferred-iova-reuse"
  /** Superpage split: build the mirroring table first, then replace the leaf in one store. */
  | "atomic-superpage-split"
  /** CAP.ESRTPS = 0: global context-cache and IOTLB invalidations after SRTP, before translation is used. */
  | "root-table-invalidation"
  /** An index-selective interrupt-entry-cache invalidation after every IRTE change (making it present included). */
  | "iec-invalidation"
  /** A change of a present leaf's permissions is invalidated like an unmap. */
  | "permission-change-invalidation"
  /**
   * Scalable mode, CM = 1, PASID-table entry not-present -> present: a PASID-selective PASID-cache
   * invalidation and a PASID-based IOTLB invalidation of the PASID (CM = 0: a write-buffer flush).
   */
  | "cm-pasid-invalidation";

export type UnmapMode = "strict" | "lazy";

export interface DriverOptions {
  /** strict: unmap returns after its invalidation completed. lazy: a flush queue. Default strict. */
  mode?: UnmapMode;
  /** Flush-queue high-water mark (pending unmaps). Default 250, as the original Linux patch. */
  flushQueueHighWater?: number;
  /** Flush-queue timer. Default 10 ms. */
  flushQueueTimeoutMs?: number;
  /**
   * How a flush-queue flush invalidates: one domain-selective invalidation per domain (Linux), or one
   * page-selective invalidation per unmapped range, batched in one submission (exact for a vIOMMU
   * shadow). Default: "page" under CM = 1, "domain" otherwise.
   */
  flushQueueGranularity?: "domain" | "page";
  /** Queue size: 2^QS pages (IQA.QS, 0..7) of 256 128-bit descriptors, or 128 256-bit ones in scalable mode. Default 0. */
  queueSizeOrder?: number;
  /**
   * Scalable mode (RTADDR.TTM = 01) when the unit offers it (ECAP.SMTS): PASID tables, 256-bit
   * descriptors, PASID-granular invalidation. A unit without SMTS is driven in legacy mode (as
   * Linux's sm_on does), `scalableFallback` says why. Needs queued invalidation. Default false.
   */
  scalableMode?: boolean;
  /**
   * Scalable mode: the stage new domains translate with. Default as Linux 6.1's DMA domains: the
   * stage the unit offers, first stage when it offers both (ECAP.FSTS and ECAP.SSTS).
   */
  stage?: "first" | "second";
  /** Use register-based invalidation even when ECAP.QI = 1. Default false. */
  registerInvalidation?: boolean;
  /** Address width of new domains in bits: 39 (3-level) or 48 (4-level), whichever SAGAW offers. Default: the widest. */
  addressWidth?: 39 | 48;
  /** Bound on register handshakes (GCMD status, CCMD/IOTLB completion), in platform ms. Default 1000. */
  registerTimeoutMs?: number;
  /** Bound on a synchronous (polled) invalidation wait, in platform ms. Default 120000 (twice the ATS time-out). */
  syncWaitTimeoutMs?: number;
  /** Resubmissions of a batch aborted by an invalidation time-out (ITE) before the operation fails. Default 1. */
  iteRetries?: number;
  /** Fault records, reported as they are read. */
  onFault?: (fault: FaultRecord) => void;
  /** Queue errors (IQE, ITE, ICE), reported when handled. */
  onQueueError?: (error: QueueErrorReport) => void;
  /**
   * Interrupt remapping when the unit offers it (ECAP.IR) and queued invalidation is on: set up
   * before DMA remapping, as Linux. `sizeOrder`: 2^(sizeOrder + 1) IRTEs (default 7, one page; Linux takes 15:
   * 65,536); `compatibilityFormat`: let compatibility-format interrupts pass (CFI; default false).
   * false: left off. Default: on.
   */
  interruptRemapping?: boolean | { sizeOrder?: number; compatibilityFormat?: boolean };
  /** Test-only switches. Never set in production. */
  testOnly?: {
    suppress?: readonly DriverRule[];
    /** Rewrites a descriptor before it is written to the queue (to inject a bad one). */
    mangleDescriptor?: (lo: bigint, hi: bigint) => [bigint, bigint];
  };
}

export interface FaultRecord {
  index: number;
  sid: number;
  reason: number;
  address: bigint;
  write: boolean;
  pasid?: number;
}

export interface QueueErrorReport {
  kind: "IQE" | "ITE" | "ICE";
  /** Descriptor index at the head when the error was seen. */
  head: number;
  /** IQERCD.IQEI for IQE. */
  code?: number;
  action: string;
}
