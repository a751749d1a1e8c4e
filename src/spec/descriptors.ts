/**
 * Queued-invalidation descriptors, 128-bit legacy form (VT-d §6.5.2). Type = lo[3:0] | lo[11:9] << 4.
 * Fields are given on the low qword (`lo`) or the high qword (`hi`).
 */
import { bits, field } from "./field.ts";

export enum DescriptorType {
  ContextCache = 1,
  Iotlb = 2,
  DeviceTlb = 3,
  InterruptEntryCache = 4,
  InvalidationWait = 5,
}

export const DESCRIPTOR_SIZE = 16;
export const DescriptorTypeLow = field(0, 4);
export const DescriptorTypeHigh = field(9, 3);

export const ContextCacheDesc = {
  G: field(4, 2),
  DID: field(16, 16),
  SID: field(32, 16),
  FM: field(48, 2),
  RESERVED_LO: 0xfffc_0000_0000_f1c0n,
  RESERVED_HI: bits(63, 0),
} as const;

export const IotlbDesc = {
  G: field(4, 2),
  DW: field(6),
  DR: field(7),
  DID: field(16, 16),
  RESERVED_LO: 0xffff_ffff_0000_f100n,
  /** hi */
  AM: field(0, 6),
  IH: field(6),
  ADDR: bits(63, 12),
  RESERVED_HI: 0xf80n,
} as const;

export const DeviceTlbDesc = {
  PFSID_LO: field(12, 4),
  MIP: field(16, 5),
  SID: field(32, 16),
  PFSID_HI: field(52, 12),
  /** Without ECAP.DIT the PFSID fields are reserved (VT-d §6.5.2.5). */
  RESERVED_LO: 0xffff_0000_ffe0_f1f0n,
  /** hi */
  S: field(0),
  ADDR: bits(63, 12),
  RESERVED_HI: 0xffen,
} as const;

export const InterruptEntryCacheDesc = {
  G: field(4),
  IM: field(27, 5),
  IIDX: field(32, 16),
  RESERVED_LO: 0xffff_0000_07ff_f1e0n,
  RESERVED_HI: bits(63, 0),
} as const;

export const WaitDesc = {
  IF: field(4),
  SW: field(5),
  FN: field(6),
  /** PD: reserved unless ECAP.PDS (not offered). */
  PD: field(7),
  STATUS_DATA: field(32, 32),
  RESERVED_LO: 0xffff_f180n,
  /** hi: status address bits 63:2 */
  STATUS_ADDRESS: bits(63, 2),
  RESERVED_HI: 0x3n,
} as const;

/**
 * IQ error information (IQERCD.IQEI, VT-d §11.4.9.9) for the IQE causes a legacy unit can report
 * (0 = no information, for older hardware).
 */
export enum InvalidationQueueError {
  /** Tail pointer beyond the queue, or misaligned (IQT bit 4 with 256-bit descriptors). */
  InvalidTail = 1,
  /** Fetching the descriptor failed (not memory). */
  FetchError = 2,
  /** Descriptor type not valid for this unit and mode. */
  InvalidType = 3,
  /** A reserved field set in a descriptor of a valid type. */
  ReservedField = 4,
  /** IQA.DW programmed with a width the unit does not support. */
  InvalidWidth = 5,
}
