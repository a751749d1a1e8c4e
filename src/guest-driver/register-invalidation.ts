/**
 * Register-based invalidation (VT-d §6.5.1): the context command
 * register and the IOTLB invalidate register, one command at a time, each polled until the unit
 * clears ICC / IVT, then checked for the granularity it actually performed (0 = refused).
 * Used when ECAP.QI = 0 or the queue cannot be enabled. There are no waits and no device-TLB
 * invalidations here (those need the queue), so `runAsync` is the synchronous path.
 */
import { Ccmd, Granularity, Iotlb, Iva, Reg } from "../spec/registers.ts";
import type { DriverCounters } from "./counters.ts";
import type { UnitCapabilities } from "./discovery.ts";
import { hex, VtdDriverError } from "./errors.ts";
import { countRequests, describeRequest, type InvalidationRequest, type Invalidator } from "./invalidation.ts";
import type { Clock } from "./platform.ts";
import { pollUntil } from "./poll.ts";
import type { UnitRegisters } from "./unit-registers.ts";

const b = (n: number) => BigInt(n);
const ICC = 1n << b(Ccmd.ICC.shift);
const IVT = 1n << b(Iotlb.IVT.shift);
/** ICC / IVT and CAIG / IAIG as bits of the upper dword. */
const ICC_HIGH = 2 ** (Ccmd.ICC.shift - 32);
const IVT_HIGH = 2 ** (Iotlb.IVT.shift - 32);
const CAIG_HIGH_SHIFT = Ccmd.CAIG.shift - 32;
const IAIG_HIGH_SHIFT = Iotlb.IAIG.shift - 32;

export class RegisterInvalidation implements Invalidator {
  readonly kind = "register";

  constructor(
    private readonly regs: UnitRegisters,
    private readonly caps: UnitCapabilities,
    private readonly clock: Clock,
    private readonly counters: DriverCounters,
    private readonly timeoutMs: number,
  ) {}

  run(requests: readonly InvalidationRequest[]): void {
    countRequests(this.counters, requests);
    for (const r of requests) this.one(r);
  }

  runAsync(requests: readonly InvalidationRequest[]): Promise<void> {
    try {
      this.run(requests);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private one(r: InvalidationRequest): void {
    switch (r.kind) {
      case "context-global": return this.context(Granularity.Global, 0, 0, 0, r);
      case "context-domain": return this.context(Granularity.Domain, r.did, 0, 0, r);
      case "context-device": return this.context(Granularity.Device, r.did, r.sid, r.fm, r);
      case "iotlb-global": return this.iotlb(Granularity.Global, 0, r);
      case "iotlb-domain": return this.iotlb(Granularity.Domain, r.did, r);
      case "iotlb-page":
        this.regs.write64(this.caps.ivaOffset, b(r.address) | (r.ih ? 1n << b(Iva.IH.shift) : 0n) | b(r.am));
        return this.iotlb(Granularity.Page, r.did, r);
      case "device-tlb":
      case "iec-global":
      case "iec-index":
      case "pasid-cache":
      case "pasid-cache-global":
      case "pasid-cache-domain":
      case "pasid-iotlb":
      case "pasid-iotlb-page":
        throw new VtdDriverError("unsupported", `${describeRequest(r)}: needs queued invalidation`);
    }
  }

  private context(granularity: number, did: number, sid: number, fm: number, r: InvalidationRequest): void {
    const command = ICC | (b(granularity) << b(Ccmd.CIRG.shift)) | (b(fm) << b(Ccmd.FM.shift)) | (b(sid) << b(Ccmd.SID.shift)) | b(did);
    this.regs.write64(Reg.CCMD, command);
    const high = this.handshake(Reg.CCMD + 4, ICC_HIGH, `CCMD.ICC clearing after ${describeRequest(r)}`);
    if (((high >>> CAIG_HIGH_SHIFT) & 3) === Granularity.Refused) {
      throw new VtdDriverError("invalidation-failed", `${describeRequest(r)}: refused by the unit (CCMD.CAIG = 0, CCMD ${hex(command)})`);
    }
  }

  private iotlb(granularity: number, did: number, r: InvalidationRequest): void {
    let command = IVT | (b(granularity) << b(Iotlb.IIRG.shift)) | (b(did) << b(Iotlb.DID.shift));
    if (this.caps.drainRead) command |= 1n << b(Iotlb.DR.shift);
    if (this.caps.drainWrite) command |= 1n << b(Iotlb.DW.shift);
    this.regs.write64(this.caps.iotlbOffset, command);
    const high = this.handshake(this.caps.iotlbOffset + 4, IVT_HIGH, `IOTLB_REG.IVT clearing after ${describeRequest(r)}`);
    if (((high >>> IAIG_HIGH_SHIFT) & 3) === Granularity.Refused) {
      throw new VtdDriverError("invalidation-failed", `${describeRequest(r)}: refused by the unit (IOTLB_REG.IAIG = 0)`);
    }
  }

  /** Polls the upper dword until `busy` clears; returns its last value. */
  private handshake(offset: number, busy: number, what: string): number {
    this.counters.registerHandshakes++;
    let high = this.regs.read32(offset);
    pollUntil(this.clock, this.counters, this.timeoutMs, () => {
      if ((high & busy) === 0) return true;
      high = this.regs.read32(offset);
      return (high & busy) === 0;
    }, what);
    return high;
  }
}
