/**
 * Fault reasons recorded in FRCD.FR, with the spec's numbers: DMA remapping (VT-d §7.1.3, Table 26)
 * and interrupt remapping (VT-d §5.1.4.1, 20h-26h).
 */
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
  /** A reserved field set in a remappable-format interrupt request (data bits 31:16). FI not valid. */
  InterruptRequestReserved = 0x20,
  /** The interrupt index is beyond the table IRTA gives (2^(S+1) entries), or its IRTE lies above HAW. */
  InterruptIndexBeyondTable = 0x21,
  /** The IRTE the interrupt index names has P = 0. */
  IrteNotPresent = 0x22,
  /** Reading the IRTE through IRTA failed (not memory). */
  InterruptTableReadError = 0x23,
  /** A reserved field (or a reserved encoding) set in a present IRTE. */
  IrteReserved = 0x24,
  /** A compatibility-format interrupt blocked: GSTS.CFIS = 0 (or IRTA.EIME = 1). FI not valid. */
  CompatibilityInterruptBlocked = 0x25,
  /** The request's source-id failed the IRTE's SVT/SQ/SID check. */
  SourceIdVerificationFailed = 0x26,
  /** RTADDR.TTM holds a value the unit does not support (rev 5.10, scalable-mode table: 0x30). */
  InvalidRootTableMode = 0x30,
  // Scalable mode (TTM = 01), VT-d §7.1.3: what the walk of §3.4.3 can raise.
  /** A request-with-PASID while TTM = 00 (legacy mode). */
  PasidRequestInLegacyMode = 0x31,
  SmRootTableReadError = 0x38,
  SmRootEntryNotPresent = 0x39,
  SmRootEntryReserved = 0x3a,
  SmContextTableReadError = 0x40,
  SmContextEntryNotPresent = 0x41,
  SmContextEntryReserved = 0x42,
  SmContextEntryInvalid = 0x43,
  /** A request-with-PASID through a context entry with PASIDE = 0. */
  SmPasidDisabled = 0x45,
  /** The PASID lies beyond the directory the context entry's PDTS sizes. */
  SmPasidBeyondDirectory = 0x46,
  /** RID_PASID (or RID_PRIV) of the context entry unusable. */
  SmRidPasidError = 0x48,
  PasidDirectoryReadError = 0x50,
  PasidDirectoryEntryNotPresent = 0x51,
  PasidDirectoryEntryReserved = 0x52,
  PasidTableReadError = 0x58,
  PasidEntryNotPresent = 0x59,
  PasidEntryReserved = 0x5a,
  /** PGTT not offered (nested, or a stage the unit lacks), AW not in SAGAW, FSPM not supported. */
  PasidEntryInvalid = 0x5b,
  /** A supervisor request through a first-stage PASID entry with SRE = 0. */
  PasidEntrySupervisorDisabled = 0x5d,
  FirstStageReadError = 0x70,
  FirstStageNotPresent = 0x71,
  FirstStageReserved = 0x72,
  SecondStageReadError = 0x78,
  SecondStageReserved = 0x7a,
  /** The table SSPTPTR names cannot be read. */
  SecondStageTablePointerInvalid = 0x7b,
  /** A first-stage input address that is not canonical. */
  NonCanonicalAddress = 0x80,
  /** A user request to a supervisor-only first-stage page. */
  UserAccessDenied = 0x81,
  /** Input address beyond what the PASID entry's translation covers (SGN.4). */
  SmAddressBeyondMgaw = 0x83,
  SmWriteNotPermitted = 0x85,
  SmReadNotPermitted = 0x86,
  SmInterruptAddress = 0x87,
}

/** The interrupt-remapping reasons (20h-26h): FRCD.FI[63:48] holds the interrupt index except for 20h and 25h. */
export function isInterruptFault(reason: number): boolean {
  return reason >= FaultReason.InterruptRequestReserved && reason <= FaultReason.SourceIdVerificationFailed;
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
  [FaultReason.InterruptRequestReserved]: "IR 20h",
  [FaultReason.InterruptIndexBeyondTable]: "IR 21h",
  [FaultReason.IrteNotPresent]: "IR 22h",
  [FaultReason.InterruptTableReadError]: "IR 23h",
  [FaultReason.IrteReserved]: "IR 24h",
  [FaultReason.CompatibilityInterruptBlocked]: "IR 25h",
  [FaultReason.SourceIdVerificationFailed]: "IR 26h",
  [FaultReason.InvalidRootTableMode]: "SRTA",
  [FaultReason.PasidRequestInLegacyMode]: "SRTA.2",
  [FaultReason.SmRootTableReadError]: "SRT.1",
  [FaultReason.SmRootEntryNotPresent]: "SRT.2",
  [FaultReason.SmRootEntryReserved]: "SRT.3",
  [FaultReason.SmContextTableReadError]: "SCT.1",
  [FaultReason.SmContextEntryNotPresent]: "SCT.2",
  [FaultReason.SmContextEntryReserved]: "SCT.3",
  [FaultReason.SmContextEntryInvalid]: "SCT.4",
  [FaultReason.SmPasidDisabled]: "SCT.6",
  [FaultReason.SmPasidBeyondDirectory]: "SCT.7",
  [FaultReason.SmRidPasidError]: "SCT.9",
  [FaultReason.PasidDirectoryReadError]: "SPD.1",
  [FaultReason.PasidDirectoryEntryNotPresent]: "SPD.2",
  [FaultReason.PasidDirectoryEntryReserved]: "SPD.3",
  [FaultReason.PasidTableReadError]: "SPT.1",
  [FaultReason.PasidEntryNotPresent]: "SPT.2",
  [FaultReason.PasidEntryReserved]: "SPT.3",
  [FaultReason.PasidEntryInvalid]: "SPT.4",
  [FaultReason.PasidEntrySupervisorDisabled]: "SPT.6",
  [FaultReason.FirstStageReadError]: "SFS.1",
  [FaultReason.FirstStageNotPresent]: "SFS.2",
  [FaultReason.FirstStageReserved]: "SFS.3",
  [FaultReason.SecondStageReadError]: "SSS.1",
  [FaultReason.SecondStageReserved]: "SSS.3",
  [FaultReason.SecondStageTablePointerInvalid]: "SSS.4",
  [FaultReason.NonCanonicalAddress]: "SGN.1",
  [FaultReason.UserAccessDenied]: "SGN.2",
  [FaultReason.SmAddressBeyondMgaw]: "SGN.4",
  [FaultReason.SmWriteNotPermitted]: "SGN.6",
  [FaultReason.SmReadNotPermitted]: "SGN.7",
  [FaultReason.SmInterruptAddress]: "SGN.8",
};

/**
 * Qualified faults are not recorded when the entry that qualifies them has FPD = 1: a context
 * entry seen on the way for DMA (VT-d §7.1.3), the IRTE for interrupts (VT-d §5.1.4.1). The
 * root-level faults, context-table read errors (legacy and scalable mode alike) and the interrupt faults found before an IRTE was
 * read (20h, 21h, 23h, 25h) are not qualified.
 */
export function isQualified(reason: FaultReason): boolean {
  switch (reason) {
    case FaultReason.RootEntryNotPresent:
    case FaultReason.RootTableReadError:
    case FaultReason.ContextTableReadError:
    case FaultReason.RootEntryReserved:
    case FaultReason.InvalidRootTableMode:
    case FaultReason.PasidRequestInLegacyMode:
    case FaultReason.SmRootTableReadError:
    case FaultReason.SmRootEntryNotPresent:
    case FaultReason.SmRootEntryReserved:
    case FaultReason.SmContextTableReadError:
    case FaultReason.InterruptRequestReserved:
    case FaultReason.InterruptIndexBeyondTable:
    case FaultReason.InterruptTableReadError:
    case FaultReason.CompatibilityInterruptBlocked:
      return false;
    default:
      return true;
  }
}
