/**
 * The interrupt request formats and the IRTE for remapped interrupts (VT-d §5.1.2, §9.10) as pure
 * functions of numbers: a request's 32-bit address and data, an IRTE as four dwords (w0 = bits
 * 31:0 ... w3 = bits 127:96). xAPIC mode only: this unit reports ECAP.EIM = 0, so IRTA.EIME is 0
 * and the APIC id is DST[15:8]. Nothing here allocates.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { DeliveryMode, IrteHi, IrteLo, MsiAddress, MsiData, RemappableAddress, RemappableData, SourceValidationType } from "../../spec/interrupts.ts";
import { MSI_ADDRESS_BASE } from "../../spec/platform.ts";

/** Spec masks as dword masks, derived once from src/spec. */
const W0_RESERVED = Number(IrteLo.RESERVED);
const W1_RESERVED_XAPIC = Number(IrteLo.RESERVED_XAPIC >> 32n);
const W2_RESERVED = Number(IrteHi.RESERVED & 0xffff_ffffn);
const W3_RESERVED = Number(IrteHi.RESERVED >> 32n);
const INTERRUPT_FORMAT = 1 << RemappableAddress.INTERRUPT_FORMAT.shift;
const SHV = 1 << RemappableAddress.SHV.shift;
const HANDLE_15 = 1 << RemappableAddress.HANDLE_15.shift;
const HANDLE = RemappableAddress.HANDLE.shift;
const DATA_RESERVED = Number(RemappableData.RESERVED);
/** Field positions as plain numbers (a property load per use on the hot path otherwise). */
const RH = IrteLo.RH.shift, DM = IrteLo.DM.shift, TM = IrteLo.TM.shift, DLM = IrteLo.DLM.shift, V = IrteLo.V.shift;
const SVT = IrteHi.SVT.shift, SQ = IrteHi.SQ.shift;
const MSI_DESTINATION = MsiAddress.DESTINATION.shift, MSI_RH = MsiAddress.RH.shift, MSI_DM = MsiAddress.DM.shift;
const MSI_DELIVERY_MODE = MsiData.DELIVERY_MODE.shift, MSI_ASSERT = 1 << MsiData.LEVEL.shift, MSI_TRIGGER_MODE = MsiData.TRIGGER_MODE.shift;
/** Bit n set: delivery mode n is defined (the others are reserved encodings). */
const VALID_DELIVERY_MODES = Object.values(DeliveryMode).reduce<number>((set, mode) => (typeof mode === "number" ? set | (1 << mode) : set), 0);

/** A request in remappable format (address bit 4 set); else it is in compatibility format. */
export function isRemappable(address: number): boolean {
  return (address & INTERRUPT_FORMAT) !== 0;
}

/** Data bits 31:16 of a remappable-format request are reserved (VT-d §5.1.2.2): a set one is fault 20h. */
export function requestReserved(data: number): boolean {
  return (data & DATA_RESERVED) !== 0;
}

/**
 * The interrupt index of a remappable-format request (VT-d §5.1.3): handle = address bits 19:5
 * with bit 2 as handle[15]; with SHV set, plus the subhandle data[15:0]. 0 .. 0x1FFFE.
 */
export function interruptIndex(address: number, data: number): number {
  const handle = ((address >>> HANDLE) & 0x7fff) | ((address & HANDLE_15) << 13);
  return address & SHV ? handle + (data & 0xffff) : handle;
}

export function irtePresent(w0: number): boolean {
  return (w0 & 1) !== 0;
}

/** FPD, evaluated whether or not P is set (VT-d §9.10). */
export function irteFaultProcessingDisable(w0: number): boolean {
  return (w0 & 2) !== 0;
}

/**
 * A present IRTE with a reserved bit or a reserved encoding set: bits 15:12 (15 is the posted
 * format, which needs CAP.PI), 31:24, DST[7:0] and DST[31:16] in xAPIC mode, 127:84; delivery
 * modes 3 and 6; SVT = 11b.
 */
export function irteReserved(w0: number, w1: number, w2: number, w3: number): boolean {
  if ((w0 & W0_RESERVED) !== 0 || (w1 & W1_RESERVED_XAPIC) !== 0 || (w2 & W2_RESERVED) !== 0 || (w3 & W3_RESERVED) !== 0) return true;
  const deliveryMode = (w0 >>> DLM) & 7;
  if (((VALID_DELIVERY_MODES >>> deliveryMode) & 1) === 0) return true; // 3 and 6
  return ((w2 >>> SVT) & 3) === SourceValidationType.Reserved;
}

/**
 * The entry's own verdict: 0 when it may remap (present, nothing reserved set), else the fault
 * (22h not present, 24h reserved). The source check comes after (`sourceIdValid`).
 */
export function irteCheck(w0: number, w1: number, w2: number, w3: number): number {
  if (!irtePresent(w0)) return FaultReason.IrteNotPresent;
  return irteReserved(w0, w1, w2, w3) ? FaultReason.IrteReserved : 0;
}

/** Bits of the function number SQ lets differ (SVT = 01): none, bit 2, bits 2:1, bits 2:0. */
const SQ_IGNORED = [0, 0b100, 0b110, 0b111] as const;

/**
 * Source validation (VT-d §9.10, SVT/SQ/SID): SVT 00 accepts every requester; 01 compares the
 * requester id with SID, ignoring the function bits SQ names; 10 accepts a requester whose bus is
 * within [SID[15:8], SID[7:0]]. (11 is reserved: `irteReserved`.)
 */
export function sourceIdValid(w2: number, sid: number): boolean {
  const svt = (w2 >>> SVT) & 3;
  const sidField = w2 & 0xffff;
  if (svt === SourceValidationType.RequesterId) {
    const ignored = SQ_IGNORED[(w2 >>> SQ) & 3]!;
    return ((sid ^ sidField) & ~ignored & 0xffff) === 0;
  }
  if (svt === SourceValidationType.BusRange) {
    const bus = sid >>> 8;
    return bus >= sidField >>> 8 && bus <= (sidField & 0xff);
  }
  return svt === SourceValidationType.None;
}

/** The compatibility-format MSI address a remapped interrupt goes out with: 0xFEE00000 | dest << 12 | RH << 3 | DM << 2. */
export function remappedAddress(w0: number, w1: number): number {
  const destination = (w1 >>> 8) & 0xff; // DST[15:8], the xAPIC id
  return (MSI_ADDRESS_BASE | (destination << MSI_DESTINATION) | (((w0 >>> RH) & 1) << MSI_RH) | (((w0 >>> DM) & 1) << MSI_DM)) >>> 0;
}

/** Its data: vector | delivery mode << 8 | level (assert) << 14 | trigger mode << 15. */
export function remappedData(w0: number): number {
  return ((w0 >>> V) & 0xff) | (((w0 >>> DLM) & 7) << MSI_DELIVERY_MODE) | MSI_ASSERT | (((w0 >>> TM) & 1) << MSI_TRIGGER_MODE);
}
