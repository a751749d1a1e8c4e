/**
 * First-stage translation (VT-d 5.10 §3.6, §9.7): 4-level IA-32e paging (FSPM 00), 4 KiB, 2 MiB
 * and 1 GiB pages (CAP.FS1GP), present, R/W and U/S at every level, XD reserved unless the PASID
 * entry's NXE, the Accessed flag set in every entry used and the Dirty flag in the leaf of a write
 * (§3.6.2), and the canonical-address check. No caching here: the caller puts caches around it.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { LEVEL_SIZE } from "../../spec/entries.ts";
import { FirstStagePte } from "../../spec/scalable.ts";
import { TWO_POW_32 } from "../../spec/numbers.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import { upperAddressMask } from "../translation/paging-entry.ts";

/** Input addresses of 4-level paging: canonical below 2^47 (the upper half is not reachable here, see below). */
const CANONICAL_LIMIT = 2 ** 47;
const LEVELS = 4;

export class FirstStageWalk {
  /** 0, or the fault reason. */
  reason = 0;
  /** The leaf's level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) and its output page. */
  level = 0;
  pageOutput = 0;
  /** R/W and U/S were set at every level of the last successful walk. */
  writable = false;
  userAllowed = false;
  /** Addresses of the entries used, for the Accessed/Dirty updates. */
  private readonly used = new Float64Array(LEVELS);

  /**
   * Walks `address` from FSPTPTR `root`. `user`: a request without supervisor privilege;
   * `writeProtect`: the PASID entry's WPE (supervisor writes honour R/W); `executeDisable`: NXE
   * (XD may be set). Addresses at or above 2^47 fault as not canonical: the upper canonical half
   * (2^64 - 2^47 and above) is beyond the numbers a request here carries exactly.
   */
  walk(mem: MemoryAccess, root: number, awBits: number, address: number, write: boolean, user: boolean,
    writeProtect: boolean, executeDisable: boolean, largePages1G: boolean): number {
    this.reason = 0;
    if (address >= CANONICAL_LIMIT) return (this.reason = FaultReason.NonCanonicalAddress);
    const hiMask = upperAddressMask(awBits);
    // Bits 51:HAW are reserved; 62:52 ignored; bit 63 (XD) reserved unless NXE.
    const hiReserved = ((0x000f_ffff & ~hiMask) | (executeDisable ? 0 : FirstStagePte.XD_HI)) >>> 0;
    let writable = true, userOk = true;
    let table = root;
    for (let level = LEVELS; level >= 1; level--) {
      const size = LEVEL_SIZE[level]!;
      const at = table + (Math.floor(address / size) % 512) * 8;
      const lo = mem.read32(at), hi = mem.read32(at + 4);
      if (lo < 0 || hi < 0) return (this.reason = FaultReason.FirstStageReadError);
      if ((lo & FirstStagePte.P) === 0) return (this.reason = FaultReason.FirstStageNotPresent);
      const large = level > 1 && (lo & FirstStagePte.PS) !== 0;
      let reservedLo = 0;
      if (level === 4) reservedLo = FirstStagePte.PS;
      else if (large && level === 3) reservedLo = largePages1G ? 0x3fff_e000 : FirstStagePte.PS;
      else if (large) reservedLo = 0x1f_e000;
      if ((lo & reservedLo) !== 0 || (hi & hiReserved) !== 0) return (this.reason = FaultReason.FirstStageReserved);
      this.used[level - 1] = at;
      if ((lo & FirstStagePte.RW) === 0) writable = false;
      if ((lo & FirstStagePte.US) === 0) userOk = false;
      const next = (hi & hiMask) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0);
      if (level === 1 || large) {
        if (user && !userOk) return (this.reason = FaultReason.UserAccessDenied);
        if (write && !writable && (user || writeProtect)) return (this.reason = FaultReason.SmWriteNotPermitted);
        this.level = level;
        this.writable = writable;
        this.userAllowed = userOk;
        this.pageOutput = next - (next % size);
        this.setAccessedDirty(mem, level, write);
        return 0;
      }
      table = next;
    }
    return 0;
  }

  /**
   * A in every entry used, D in the leaf of a write: atomic in hardware, here a compare-and-set of
   * the low dword against the value the walk read, so an entry the guest changed meanwhile (a
   * store the unit does not see yet: write buffer, unsnooped CPU caches) keeps the guest's value.
   */
  private setAccessedDirty(mem: MemoryAccess, leafLevel: number, write: boolean): void {
    for (let level = LEVELS; level >= leafLevel; level--) {
      const at = this.used[level - 1]!;
      const lo = mem.read32(at);
      if (lo < 0) return;
      const want = level === leafLevel && write ? FirstStagePte.A | FirstStagePte.D : FirstStagePte.A;
      if ((lo & want) !== want) mem.compareAndSet32(at, lo, (lo | want) >>> 0);
    }
  }
}
