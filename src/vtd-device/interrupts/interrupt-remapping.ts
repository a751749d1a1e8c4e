/**
 * Interrupt remapping (VT-d ch. 5): a device's write to the interrupt range, checked and
 * translated through the IRTE its interrupt index names (VT-d §5.1.4), with the interrupt entry
 * cache in front. The register side (IRTA latched at SIRTP, IRES, CFIS) is set by the global
 * command (registers/global-command.ts). Results go to fields: a request allocates nothing.
 *
 * Order of the checks, each ending the request with its fault (VT-d §5.1.4.1):
 *   IRES = 0                    → the request goes out unchanged, whatever its format
 *   compatibility format        → 25h unless GSTS.CFIS = 1, then unchanged
 *   data bits 31:16 set         → 20h (decoding the request comes before any table access)
 *   index ≥ 2^(S+1) or above HAW → 21h
 *   IRTE read fails             → 23h (never cached)
 *   IRTE P = 0                  → 22h   ┐ qualified: not recorded when the IRTE's FPD = 1
 *   IRTE reserved bit/encoding  → 24h   │
 *   SVT/SQ/SID check fails      → 26h   ┘
 *   else                        → the compatibility-format MSI the IRTE describes
 */
import { FaultReason } from "../../spec/fault-reasons.ts";
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT } from "../../spec/entries.ts";
import { IRTE_SIZE } from "../../spec/interrupts.ts";
import type { CachingPolicy } from "../caches/caching-policy.ts";
import type { InterruptEntryCache } from "../caches/interrupt-entry-cache.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { Section } from "../state/codec.ts";
import { interruptIndex, irteCheck, irteFaultProcessingDisable, isRemappable, remappedAddress, remappedData, requestReserved, sourceIdValid } from "./irte.ts";

/** Not a VT-d fault reason: the write was no interrupt request (bad arguments, or outside 0xFEE00000-0xFEEFFFFF). */
export const NOT_AN_INTERRUPT = 0 as const;

const BASE_BIGINT = BigInt(INTERRUPT_RANGE_BASE);
const LIMIT_BIGINT = BigInt(INTERRUPT_RANGE_LIMIT);

/** Interrupt remapping's latched state as a snapshot holds it (the entry cache is its own section). */
export interface InterruptRemappingState {
  enabled: boolean;
  compatibilityFormatPasses: boolean;
  tableBase: number;
  tableEntries: number;
  address: number;
  data: number;
  fault: number;
}

export class InterruptRemapping {
  /** GSTS.IRES. */
  enabled = false;
  /** GSTS.CFIS: compatibility-format interrupts pass (EIME is always 0 here: ECAP.EIM = 0). */
  compatibilityFormatPasses = false;
  /** IRTA as latched by SIRTP: table base and its number of entries, 2^(S+1). */
  tableBase = 0;
  tableEntries = 2;

  /** The message of the last request let through: a 32-bit MSI address and its data. */
  address = 0;
  data = 0;
  /** Why the last request was blocked: a fault reason, or NOT_AN_INTERRUPT. */
  fault = 0;

  /** 2^HAW: an IRTE must lie below it. */
  private readonly addressLimit: number;
  /** IRTA bits 63:32 below HAW (higher bits are ignored). */

  constructor(
    private readonly memory: MemoryAccess,
    readonly cache: InterruptEntryCache,
    private readonly policy: CachingPolicy,
    private readonly faults: FaultRecording,
    private readonly stats: DeviceStats,
    private readonly trace: Tracer,
    private readonly cfg: WalkConfig,
  ) {
    this.addressLimit = 2 ** cfg.awBits;
  }

  /** Snapshot (state/): IRES, CFIS, the latched IRTA, and the outcome of the last request. */
  save(): InterruptRemappingState {
    return {
      enabled: this.enabled, compatibilityFormatPasses: this.compatibilityFormatPasses, tableBase: this.tableBase, tableEntries: this.tableEntries,
      address: this.address, data: this.data, fault: this.fault,
    };
  }

  decode(s: Section): InterruptRemappingState {
    const tableBase = s.int("tableBase", 0, this.addressLimit - 4096);
    if (tableBase % 4096 !== 0) s.fail(`tableBase: 0x${tableBase.toString(16)} is not 4 KiB aligned`);
    const tableEntries = s.int("tableEntries", 2, 65536);
    if ((tableEntries & (tableEntries - 1)) !== 0) s.fail(`tableEntries: ${tableEntries} is not a power of two`);
    return {
      enabled: s.bool("enabled"), compatibilityFormatPasses: s.bool("compatibilityFormatPasses"), tableBase, tableEntries,
      address: s.int("address", 0, 0xffff_ffff), data: s.int("data", 0, 0xffff_ffff), fault: s.int("fault", 0, 0xff),
    };
  }

  load(state: InterruptRemappingState): void {
    this.enabled = state.enabled;
    this.compatibilityFormatPasses = state.compatibilityFormatPasses;
    this.tableBase = state.tableBase;
    this.tableEntries = state.tableEntries;
    this.address = state.address;
    this.data = state.data;
    this.fault = state.fault;
  }

  reset(): void {
    this.enabled = false;
    this.compatibilityFormatPasses = false;
    this.tableBase = 0;
    this.tableEntries = 2;
    this.cache.invalidateAll();
  }

  /**
   * SIRTP latches IRTA (given as its two dwords): base bits 63:12 below HAW, size S. The
   * interrupt entry cache is left alone: CAP.ESIRTPS = 0, so software follows SIRTP with a
   * global interrupt-entry-cache invalidation (GCMD.SIRTP, VT-d §11.4.4).
   */
  latchTable(low: number, high: number): void {
    this.tableBase = this.cfg.entryMasks.address(low, high);
    this.tableEntries = 2 ** ((low & 0xf) + 1);
  }

  /**
   * One interrupt request: `sid` an integer 0..0xFFFF, `address` a number or bigint in the
   * interrupt range, `data` an integer 0..2^32-1. Anything else is no interrupt request: false
   * with `fault` = NOT_AN_INTERRUPT, nothing recorded. Returns true with the message to deliver
   * in `address`/`data`, or false with the fault in `fault` (recorded unless FPD says otherwise).
   * Never throws.
   */
  request(sid: number, address: bigint | number, data: number): boolean {
    let at: number;
    if (typeof address === "number") at = address;
    else if (typeof address === "bigint" && address >= BASE_BIGINT && address <= LIMIT_BIGINT) at = Number(address);
    else at = -1;
    if (!(at >= INTERRUPT_RANGE_BASE && at <= INTERRUPT_RANGE_LIMIT && Number.isInteger(at))
      || typeof sid !== "number" || !(sid >= 0 && sid <= 0xffff && Number.isInteger(sid))
      || typeof data !== "number" || !(data >= 0 && data <= 0xffff_ffff && Number.isInteger(data))) {
      this.fault = NOT_AN_INTERRUPT;
      return false;
    }
    return this.remap(sid, at, data);
  }

  /** The request path proper, on checked numbers. */
  private remap(sid: number, address: number, data: number): boolean {
    if (!this.enabled) return this.pass(sid, address, data, "not enabled");
    if (!isRemappable(address)) {
      if (this.compatibilityFormatPasses) return this.pass(sid, address, data, "compatibility");
      return this.block(sid, -1, FaultReason.CompatibilityInterruptBlocked, false, address, data);
    }
    if (requestReserved(data)) return this.block(sid, -1, FaultReason.InterruptRequestReserved, false, address, data);
    const index = interruptIndex(address, data);
    const entryAddress = this.tableBase + index * IRTE_SIZE;
    if (index >= this.tableEntries || entryAddress + IRTE_SIZE > this.addressLimit) {
      return this.block(sid, index, FaultReason.InterruptIndexBeyondTable, false, address, data);
    }
    const cache = this.cache;
    let w0: number, w1: number, w2: number, w3: number, reason: number;
    const slot = cache.lookup(index);
    if (slot >= 0) {
      this.stats.interruptEntryCacheHits++;
      w0 = cache.w0[slot]!; w1 = cache.w1[slot]!; w2 = cache.w2[slot]!; w3 = cache.w3[slot]!;
      reason = irteCheck(w0, w1, w2, w3);
    } else {
      this.stats.interruptEntryCacheMisses++;
      const memory = this.memory;
      const r0 = memory.read32(entryAddress), r1 = memory.read32(entryAddress + 4);
      const r2 = memory.read32(entryAddress + 8), r3 = memory.read32(entryAddress + 12);
      if (r0 < 0 || r1 < 0 || r2 < 0 || r3 < 0) return this.block(sid, index, FaultReason.InterruptTableReadError, false, address, data);
      // As int32, like the cache's dwords: one representation on both paths.
      w0 = r0 | 0; w1 = r1 | 0; w2 = r2 | 0; w3 = r3 | 0;
      reason = irteCheck(w0, w1, w2, w3);
      if (this.policy.mayCacheInterruptEntry(reason === 0)) cache.fill(index, w0, w1, w2, w3);
    }
    if (reason !== 0) return this.block(sid, index, reason, irteFaultProcessingDisable(w0), address, data);
    if (!sourceIdValid(w2, sid)) return this.block(sid, index, FaultReason.SourceIdVerificationFailed, irteFaultProcessingDisable(w0), address, data);
    this.address = remappedAddress(w0, w1);
    this.data = remappedData(w0);
    this.stats.interruptsRemapped++;
    if (this.trace.active) this.traceDelivery(sid, index, "remapped", address, data);
    return true;
  }

  private pass(sid: number, address: number, data: number, how: "compatibility" | "not enabled"): boolean {
    this.address = address;
    this.data = data;
    this.stats.interruptsPassedThrough++;
    if (this.trace.active) this.traceDelivery(sid, -1, how, address, data);
    return true;
  }

  /**
   * An interrupt-remapping fault: recorded with FI[63:48] = the interrupt index where the spec
   * defines one (not for 20h and 25h: FI 0), T = 0, and the fault event (faults/fault-recording.ts).
   */
  private block(sid: number, index: number, reason: FaultReason, fpd: boolean, address: number, data: number): boolean {
    const fi = index < 0 ? 0 : (index & 0xffff) * 2 ** 48;
    const recorded = this.faults.record(sid, fi, reason, true, fpd);
    this.fault = reason;
    this.stats.interruptsBlocked++;
    if (this.trace.active) {
      this.trace.emit({ type: "vtd_ir_fault", sid, index, reason, address: BigInt(address), data, recorded });
    }
    return false;
  }

  private traceDelivery(sid: number, index: number, how: "remapped" | "compatibility" | "not enabled", address: number, data: number): void {
    this.trace.emit({ type: "vtd_ir_remap", sid, index, how, address: BigInt(address), data, remappedAddress: BigInt(this.address), remappedData: this.data });
  }
}
