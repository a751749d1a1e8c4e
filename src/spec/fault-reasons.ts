/** Fault reasons recorded in FRCD.FR, with the spec's numbers (VT-d §7.1.3, Table 26). */
export enum FaultReason {
  RootEntryNotPresent = 0x1,
  ContextEntryNotPresent = 0x2,
  ContextEntryInvalid = 0x3,
  AddressBeyondMgaw = 0x4,
  WriteNotPermitted = 0x5,
  ReadNotPermitted = 0x6,
  PagingEntryReadError = 0x7,
  RootTableReadError = 0x8,
  ContextTableReadError = 0x9,
  RootEntryReserved = 0xa,
  ContextEntryReserved = 0xb,
  PagingEntryReserved = 0xc,
  TranslationTypeBlocked = 0xd,
  InterruptAddress = 0xe,
  /** RTADDR.TTM holds a value the unit does not support (rev 5.10, scalable-mode table: 0x30). */
  InvalidRootTableMode = 0x30,
}

/** Short spec codes (VT-d Table 26) for traces and documentation. */
export const FAULT_CODES: Readonly<Record<FaultReason, string>> = {
  [FaultReason.RootEntryNotPresent]: "LRT.2",
  [FaultReason.ContextEntryNotPresent]: "LCT.2",
  [FaultReason.ContextEntryInvalid]: "LCT.4",
  [FaultReason.AddressBeyondMgaw]: "LGN.1",
  [FaultReason.WriteNotPermitted]: "LGN.2",
  [FaultReason.ReadNotPermitted]: "LGN.3",
  [FaultReason.PagingEntryReadError]: "LSS.1",
  [FaultReason.RootTableReadError]: "LRT.1",
  [FaultReason.ContextTableReadError]: "LCT.1",
  [FaultReason.RootEntryReserved]: "LRT.3",
  [FaultReason.ContextEntryReserved]: "LCT.3",
  [FaultReason.PagingEntryReserved]: "LSS.2",
  [FaultReason.TranslationTypeBlocked]: "LCT.5",
  [FaultReason.InterruptAddress]: "LGN.4",
  [FaultReason.InvalidRootTableMode]: "SRTA",
};

/**
 * Qualified faults are not recorded when a context entry seen on the way has FPD = 1
 * (VT-d §7.1.3). The root-level faults and context-table read errors are not qualified.
 */
export function isQualified(reason: FaultReason): boolean {
  switch (reason) {
    case FaultReason.RootEntryNotPresent:
    case FaultReason.RootTableReadError:
    case FaultReason.ContextTableReadError:
    case FaultReason.RootEntryReserved:
    case FaultReason.InvalidRootTableMode:
      return false;
    default:
      return true;
  }
}
