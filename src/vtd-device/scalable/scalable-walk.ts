/**
 * The scalable-mode walk to a PASID-table entry (VT-d 5.10 §3.4.3): scalable-mode root entry →
 * 256-bit context entry → PASID directory entry → 512-bit PASID-table entry, with every check the
 * spec names on the way (§9.2, §9.4-§9.6, fault reasons of §7.1.3). A pure function of memory,
 * the latched root and the request; results go into a caller-owned object (no allocation).
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { TWO_POW_32 } from "../../spec/numbers.ts";
import {
  NO_PASID, PASID_DIRECTORY_ENTRY_SIZE, PASID_ENTRY_SIZE, PASID_TABLE_INDEX_BITS, PDTS_BASE, PasidGranularTranslationType,
  SM_CONTEXT_ENTRY_SIZE, SM_DEVFN_UPPER, SM_ROOT_ENTRY_SIZE,
} from "../../spec/scalable.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { upperAddressMask } from "../translation/paging-entry.ts";

/** What the walk needs to know of the unit, as plain numbers and flags. */
export interface ScalableWalkConfig {
  readonly awBits: number;
  /** SAGAW bit mask (second-stage AW values offered). */
  readonly sagaw: number;
  readonly firstStage: boolean;
  readonly secondStage: boolean;
  readonly passThrough: boolean;
  readonly deviceIotlb: boolean;
  readonly supervisorRequests: boolean;
}

export class ScalableWalk {
  /** 0 when a usable PASID-table entry was found, else the fault reason. */
  reason = 0;
  /** An FPD = 1 was seen on the way (context, PASID directory or PASID-table entry). */
  faultProcessingDisable = false;
  /** The PASID the walk used: the request's, or the context entry's RID_PASID (-1 until the walk knows it). */
  pasid = -1;
  /** A request without a PASID that RID_PRIV makes a supervisor request. */
  ridPrivileged = false;
  did = 0;
  /** PasidGranularTranslationType of the entry. */
  pgtt = 0;
  /** Second stage: AW (levels = aw + 2) and SSPTPTR. */
  aw = 0;
  secondStageRoot = 0;
  /** First stage: FSPTPTR, SRE, WPE and NXE of the entry. */
  firstStageRoot = 0;
  supervisorRequests = false;
  writeProtect = false;
  executeDisable = false;
}

/** Scalable-mode root → context → PASID directory → PASID-table entry for (sid, pasid); pasid NO_PASID uses RID_PASID. */
export function walkPasidEntry(mem: MemoryAccess, rootTable: number, sid: number, pasid: number, cfg: ScalableWalkConfig, out: ScalableWalk): ScalableWalk {
  out.reason = 0;
  out.faultProcessingDisable = false;
  out.ridPrivileged = false;
  out.did = 0;
  out.pasid = pasid;
  const hiMask = upperAddressMask(cfg.awBits);
  const devfn = sid & 0xff;
  // Root entry: the lower half (LP, LCTP) serves devfn 0-127, the upper half (UP, UCTP) 128-255 (§9.2).
  const rootAt = rootTable + (sid >>> 8) * SM_ROOT_ENTRY_SIZE + (devfn >= SM_DEVFN_UPPER ? 8 : 0);
  const r0 = mem.read32(rootAt), r1 = mem.read32(rootAt + 4);
  if (r0 < 0 || r1 < 0) return fail(out, FaultReason.SmRootTableReadError);
  if ((r0 & 1) === 0) return fail(out, FaultReason.SmRootEntryNotPresent);
  if ((r0 & 0xffe) !== 0 || (r1 & ~hiMask) !== 0) return fail(out, FaultReason.SmRootEntryReserved);
  const contextTable = (r1 & hiMask) * TWO_POW_32 + ((r0 & 0xffff_f000) >>> 0);

  // Context entry, 256 bits (§9.4).
  const at = contextTable + (devfn & 0x7f) * SM_CONTEXT_ENTRY_SIZE;
  const c0 = mem.read32(at), c1 = mem.read32(at + 4), c2 = mem.read32(at + 8), c3 = mem.read32(at + 12);
  const c4 = mem.read32(at + 16), c5 = mem.read32(at + 20), c6 = mem.read32(at + 24), c7 = mem.read32(at + 28);
  if (c0 < 0 || c1 < 0 || c2 < 0 || c3 < 0 || c4 < 0 || c5 < 0 || c6 < 0 || c7 < 0) {
    return fail(out, FaultReason.SmContextTableReadError);
  }
  out.faultProcessingDisable = (c0 & 2) !== 0; // evaluated even when P = 0
  if ((c0 & 1) === 0) return fail(out, FaultReason.SmContextEntryNotPresent);
  // Reserved: bits 8:5, DTE without ECAP.DT, PRE (no ECAP.PRS), address bits ≥ HAW, bits 127:85 and 255:128.
  const dteReserved = !cfg.deviceIotlb && (c0 & 4) !== 0;
  if ((c0 & 0x1e0) !== 0 || (c0 & 0x10) !== 0 || dteReserved || (c1 & ~hiMask) !== 0 || (c2 & 0xffe0_0000) !== 0 || (c3 | c4 | c5 | c6 | c7) !== 0) {
    return fail(out, FaultReason.SmContextEntryReserved);
  }
  const directoryEntries = 2 ** (((c0 >>> 9) & 7) + PDTS_BASE);
  let used = pasid;
  if (pasid === NO_PASID) {
    used = c2 & 0xf_ffff;
    out.ridPrivileged = (c2 & 0x10_0000) !== 0;
    // RID_PRIV asks for supervisor requests the unit does not take (ECAP.SRS = 0), or RID_PASID lies beyond the directory.
    if ((out.ridPrivileged && !cfg.supervisorRequests) || used >>> PASID_TABLE_INDEX_BITS >= directoryEntries) {
      return fail(out, FaultReason.SmRidPasidError);
    }
  } else {
    if ((c0 & 8) === 0) return fail(out, FaultReason.SmPasidDisabled);
    if (used >>> PASID_TABLE_INDEX_BITS >= directoryEntries) return fail(out, FaultReason.SmPasidBeyondDirectory);
  }
  out.pasid = used;
  const directory = (c1 & hiMask) * TWO_POW_32 + ((c0 & 0xffff_f000) >>> 0);

  // PASID directory entry (§9.5).
  const dirAt = directory + (used >>> PASID_TABLE_INDEX_BITS) * PASID_DIRECTORY_ENTRY_SIZE;
  const d0 = mem.read32(dirAt), d1 = mem.read32(dirAt + 4);
  if (d0 < 0 || d1 < 0) return fail(out, FaultReason.PasidDirectoryReadError);
  if (d0 & 2) out.faultProcessingDisable = true;
  if ((d0 & 1) === 0) return fail(out, FaultReason.PasidDirectoryEntryNotPresent);
  if ((d0 & 0xffc) !== 0 || (d1 & ~hiMask) !== 0) return fail(out, FaultReason.PasidDirectoryEntryReserved);
  const table = (d1 & hiMask) * TWO_POW_32 + ((d0 & 0xffff_f000) >>> 0);

  return pasidTableEntry(mem, table + (used & 0x3f) * PASID_ENTRY_SIZE, hiMask, cfg, out);
}

/** The 512-bit PASID-table entry at `at` (§9.6). */
function pasidTableEntry(mem: MemoryAccess, at: number, hiMask: number, cfg: ScalableWalkConfig, out: ScalableWalk): ScalableWalk {
  const p0 = mem.read32(at), p1 = mem.read32(at + 4), p2 = mem.read32(at + 8), p4 = mem.read32(at + 16), p5 = mem.read32(at + 20);
  if (p0 < 0 || p1 < 0 || p2 < 0 || p4 < 0 || p5 < 0) return fail(out, FaultReason.PasidTableReadError);
  let upper = 0; // bits 511:192, all reserved
  for (let i = 24; i < PASID_ENTRY_SIZE; i += 4) {
    const w = mem.read32(at + i);
    if (w < 0) return fail(out, FaultReason.PasidTableReadError);
    upper |= w;
  }
  const p3 = mem.read32(at + 12);
  if (p3 < 0) return fail(out, FaultReason.PasidTableReadError);
  if (p0 & 2) out.faultProcessingDisable = true;
  if ((p0 & 1) === 0) return fail(out, FaultReason.PasidEntryNotPresent);
  const pgtt = (p0 >>> 6) & 7;
  // Reserved: SSEE (no ECAP.ERS), SSADE (no SSADS), bits 11:10, DID's neighbours 22:16, qword 2 bits 11:8,
  // the stage pointers' bits ≥ HAW, and bits 511:192.
  const ssptptrHigh = pgtt === PasidGranularTranslationType.SecondStage ? p1 & ~hiMask : 0;
  const fsptptrHigh = pgtt === PasidGranularTranslationType.FirstStage ? p5 & ~hiMask : 0;
  if ((p0 & 0xe20) !== 0 || (p2 & 0x7f_0000) !== 0 || (p4 & 0xf00) !== 0 || ssptptrHigh !== 0 || fsptptrHigh !== 0 || upper !== 0) {
    return fail(out, FaultReason.PasidEntryReserved);
  }
  out.pgtt = pgtt;
  out.did = p2 & 0xffff;
  out.aw = (p0 >>> 2) & 7;
  out.secondStageRoot = (p1 & hiMask) * TWO_POW_32 + ((p0 & 0xffff_f000) >>> 0);
  out.firstStageRoot = (p5 & hiMask) * TWO_POW_32 + ((p4 & 0xffff_f000) >>> 0);
  out.supervisorRequests = (p4 & 1) !== 0;
  out.writeProtect = (p4 & 0x10) !== 0;
  out.executeDisable = (p4 & 0x20) !== 0;
  switch (pgtt) {
    case PasidGranularTranslationType.SecondStage:
      if (!cfg.secondStage || ((cfg.sagaw >>> out.aw) & 1) === 0) return fail(out, FaultReason.PasidEntryInvalid);
      return out;
    case PasidGranularTranslationType.FirstStage:
      // FSPM 00 (4-level) only: 5-level paging (CAP.FS5LP) is not offered.
      if (!cfg.firstStage || ((p4 >>> 2) & 3) !== 0) return fail(out, FaultReason.PasidEntryInvalid);
      return out;
    case PasidGranularTranslationType.PassThrough:
      if (!cfg.passThrough) return fail(out, FaultReason.PasidEntryInvalid);
      return out;
    default:
      // Nested (ECAP.NEST = 0) and the reserved encodings.
      return fail(out, FaultReason.PasidEntryInvalid);
  }
}

function fail(out: ScalableWalk, reason: FaultReason): ScalableWalk {
  out.reason = reason;
  return out;
}
