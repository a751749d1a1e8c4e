/**
 * DMA requests that carry the new optional argument of `dmaRead` / `dmaWrite`: a PASID and a
 * privilege (PCIe's PASID TLP prefix, VT-d §3.4.3). Requests without it take the unit's usual path
 * (device.ts), untouched. Here each page is translated by scalable mode's walk when SRTP latched
 * TTM = 01; in legacy mode (TTM = 00) a request-with-PASID faults 31h; with translation off it
 * passes untranslated. Faults record PP, PV and PRIV. Bounded: one walk per page of the buffer.
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { NO_PASID, PASID_LIMIT } from "../../spec/scalable.ts";
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "../dma-result.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { Translator } from "../translation/translator.ts";
import type { ScalableTranslation } from "./scalable-translation.ts";

/** The optional argument of `dmaRead` / `dmaWrite`. */
export interface DmaRequestOptions {
  /** The request's PASID, 0..2^pasidBits - 1 (needs ECAP.PASID, option `pasidBits`). Absent: a request without PASID (RID_PASID). */
  pasid?: number;
  /** PR of the PASID prefix: a supervisor request. Only with a `pasid`. */
  privileged?: boolean;
}

const TWO_POW_64 = 2n ** 64n;

export class PasidRequests {
  constructor(
    private readonly translator: Translator,
    private readonly scalable: ScalableTranslation | undefined,
    private readonly memory: MemoryAccess,
    private readonly faults: FaultRecording,
    /** ECAP.PSS + 1, or 0 when the unit takes no requests-with-PASID (then `scalable` may be undefined). */
    private readonly pasidBits: number,
  ) {}

  /**
   * A request with its options. `undefined`: no PASID, the unit's usual path serves it (in
   * scalable mode through RID_PASID). What no bus can carry aborts with nothing recorded: a bad
   * address or buffer, options that are not an object, a PASID outside 0..2^pasidBits - 1 or on a
   * unit without ECAP.PASID, `privileged` without a PASID, on a unit without ECAP.SRS, or not a boolean.
   */
  transfer(sid: number, iova: unknown, bytes: unknown, write: boolean, options: unknown): DmaResult | undefined {
    if (typeof options !== "object" || options === null) return dmaFailure(DMA_ABORT);
    const { pasid, privileged } = options as DmaRequestOptions;
    if (privileged !== undefined && typeof privileged !== "boolean") return dmaFailure(DMA_ABORT);
    if (pasid === undefined) return privileged ? dmaFailure(DMA_ABORT) : undefined;
    const scalable = this.scalable;
    if (scalable === undefined || typeof pasid !== "number" || !Number.isInteger(pasid) || pasid < 0 || pasid >= Math.min(PASID_LIMIT, 2 ** this.pasidBits)) {
      return dmaFailure(DMA_ABORT);
    }
    // A supervisor request to a unit without ECAP.SRS is none it takes.
    if (privileged === true && !scalable.supervisorRequests) return dmaFailure(DMA_ABORT);
    if (!(bytes instanceof Uint8Array)) return dmaFailure(DMA_ABORT);
    let exact: bigint | undefined;
    let address: number;
    if (typeof iova === "number" && Number.isSafeInteger(iova) && iova >= 0) {
      address = iova;
    } else if (typeof iova === "bigint" && iova >= 0n && iova < TWO_POW_64) {
      address = Number(iova);
      if (address > Number.MAX_SAFE_INTEGER) exact = iova;
    } else {
      return dmaFailure(DMA_ABORT);
    }
    scalable.requestPasid = pasid;
    scalable.requestPrivileged = privileged === true;
    try {
      return this.pages(sid & 0xffff, address, bytes, write, exact, scalable, pasid, privileged === true);
    } finally {
      scalable.requestPasid = NO_PASID;
      scalable.requestPrivileged = false;
    }
  }

  private pages(sid: number, address: number, bytes: Uint8Array, write: boolean, exact: bigint | undefined,
    scalable: ScalableTranslation, pasid: number, privileged: boolean): DmaResult {
    const t = this.translator;
    let done = 0;
    while (done < bytes.length) {
      let reason: number;
      if (!t.enabled) reason = t.translate(sid, address, write);
      else if (scalable.active) reason = scalable.translateRequestWithPasid(t, t.rootTable, sid, address, write);
      else if (t.rootTableModeValid) reason = FaultReason.PasidRequestInLegacyMode;
      else reason = FaultReason.InvalidRootTableMode;
      if (reason !== 0) {
        const fpd = reason === FaultReason.PasidRequestInLegacyMode ? false : t.resultFpd;
        this.faults.record(sid, address, reason, write, fpd, exact, pasid, privileged);
        return dmaFailure(reason);
      }
      const chunk = Math.min(bytes.length - done, t.resultLimit);
      const ok = write ? this.memory.writeFrom(t.resultOutput, bytes, done, chunk) : this.memory.readInto(t.resultOutput, bytes, done, chunk);
      if (!ok) return dmaFailure(DMA_ABORT);
      done += chunk;
      address += chunk;
    }
    return DMA_OK;
  }
}
