/**
 * The VT-d remapping unit: register interface for the guest CPU, DMA and interrupt requests from
 * devices. Platform-neutral: it knows guest memory, a clock it is told about, and an interrupt sink.
 */
import type { FaultReason } from "../spec/fault-reasons.ts";
import { Reg } from "../spec/registers.ts";
import { CachingPolicy } from "./caches/caching-policy.ts";
import { InterruptEntryCache } from "./caches/interrupt-entry-cache.ts";
import { InterruptRemapping } from "./interrupts/interrupt-remapping.ts";
import { interruptFailure, type InterruptResult } from "./interrupts/interrupt-result.ts";
import { GlobalCommand } from "./registers/global-command.ts";
import { RegisterWrites } from "./registers/register-writes.ts";
import { walkConfig, type WalkConfig } from "./registers/capabilities.ts";
import type { DriverChecker } from "./checker/checker.ts";
import { installChecker } from "./checker/checker-install.ts";
import { ContextCache } from "./caches/context-cache.ts";
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "./dma-result.ts";
import { FaultRecording } from "./faults/fault-recording.ts";
import { InterruptEvent } from "./faults/interrupt-event.ts";
import { Invalidation } from "./invalidation/cache-invalidation.ts";
import { InvalidationQueue } from "./invalidation/invalidation-queue.ts";
import { DeviceTlbs } from "./caches/device-tlb.ts";
import { Iotlb } from "./caches/iotlb.ts";
import type { MemoryAccess } from "./memory/memory-access.ts";
import type { WriteBufferAccess } from "./memory/write-buffer.ts";
import type { CpuCacheAccess } from "./memory/cpu-caches.ts";
import { TableViews } from "./memory/table-views.ts";
import { IommuNotifiers, ROOT_BLOCKED, ROOT_TRANSLATION_OFF } from "./notifiers/notifiers.ts";
import { resolveOptions, type ResolvedOptions, type VtdOptions } from "./options.ts";
import { RegisterFile } from "./registers/register-file.ts";
import { RegisterInvalidation } from "./invalidation/register-invalidation.ts";
import { registerTable, registerWindowSize, type RegisterSpec } from "./registers/register-table.ts";
import { DeviceStats, UnitCounters } from "./stats.ts";
import { Tracer } from "./trace.ts";
import { Translator } from "./translation/translator.ts";
import { readCacheContents, type CacheContents } from "./debug-view.ts";
import { commitUnit, decodeUnit, saveUnit, type UnitParts } from "./state/unit-state.ts";
import type { VtdSnapshot } from "./state/snapshot.ts";
import { PasidRequests, type DmaRequestOptions } from "./scalable/pasid-requests.ts";
import { ScalableTranslation } from "./scalable/scalable-translation.ts";

/** Numbers up to here are exact integers. */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;

export class VtdDevice {
  readonly options: ResolvedOptions;
  readonly table: readonly RegisterSpec[];
  readonly registerWindowSize: number;
  readonly trace = new Tracer();
  readonly stats = new DeviceStats();
  /** Counts by kind, source, requester and reason, beside `stats` (what the summaries print). */
  readonly counters = new UnitCounters();

  private readonly regs: RegisterFile;
  private readonly memory: MemoryAccess;
  private readonly cfg: WalkConfig;
  private readonly contextCache: ContextCache;
  private readonly iotlb: Iotlb;
  private readonly invalidation: Invalidation;
  private readonly registerInvalidation: RegisterInvalidation;
  private readonly faultEvent: InterruptEvent;
  private readonly completionEvent: InterruptEvent;
  private readonly faults: FaultRecording;
  private readonly queue: InvalidationQueue;
  private readonly translator: Translator;
  private readonly registerWrites: RegisterWrites;
  /** Interrupt remapping (option `interruptRemapping`); with it off, IRES stays 0 and requests pass unchanged. */
  private readonly interrupts: InterruptRemapping;
  /** The endpoints' own translation caches (ATS), for context entries with TT = 1. */
  readonly deviceTlbs: DeviceTlbs;
  /** The write buffer (CAP.RWBF, option `rwbf`): what table reads do not see yet. Undefined without RWBF. */
  readonly writeBuffer: WriteBufferAccess | undefined;
  /** The CPU caches the unit does not snoop (ECAP.C = 0 with option `cacheLineFlushes`). Undefined otherwise. */
  readonly cpuCaches: CpuCacheAccess | undefined;
  private readonly views: TableViews;
  /** The strict checker of guest drivers (option `checker`): its reports and counts. Undefined when off. */
  readonly checker: DriverChecker | undefined;
  /** IOMMU notifiers per requester id (the VFIO path): `notifiers.addressSpace(sid).register(...)`. */
  readonly notifiers: IommuNotifiers;

  /** Requests-with-PASID (the optional argument of dmaRead/dmaWrite; scalable mode). */
  private readonly pasidRequests: PasidRequests;
  /** The exact address of a request at or above 2^53 while it is served (its fault record needs it). */
  private exactAddress: bigint | undefined = undefined;

  constructor(options: VtdOptions) {
    this.options = resolveOptions(options);
    const o = this.options;
    this.table = registerTable(o);
    this.registerWindowSize = registerWindowSize(o.faultRecords);
    this.regs = new RegisterFile(this.table, this.registerWindowSize);
    this.views = new TableViews(o, () => this.now);
    ({ memory: this.memory, writeBuffer: this.writeBuffer, cpuCaches: this.cpuCaches } = this.views);
    const tables = this.views.tables;
    this.cfg = walkConfig(o);
    this.contextCache = new ContextCache(o.contextCacheEntries);
    this.iotlb = new Iotlb(o.iotlbEntries);
    this.deviceTlbs = new DeviceTlbs(o.deviceIotlbEntries, o.deviceIotlbEntriesPerEndpoint);
    this.invalidation = new Invalidation(this.contextCache, this.iotlb, this.stats, this.trace, this.counters);
    const policy = new CachingPolicy(this.contextCache, this.iotlb, this.cfg, o.negativeCaching);
    this.translator = new Translator(tables, this.cfg, this.contextCache, this.iotlb, this.deviceTlbs, policy, this.stats, this.trace, this.counters);
    const translator = this.translator;
    if (o.scalableMode) translator.scalable = new ScalableTranslation(tables, o, this.cfg, this.stats, this.counters);
    this.notifiers = new IommuNotifiers(o, tables, this.cfg, () => (!translator.enabled ? ROOT_TRANSLATION_OFF : translator.rootTableModeValid ? translator.rootTable : ROOT_BLOCKED));
    this.invalidation.listener = this.notifiers;
    this.registerInvalidation = new RegisterInvalidation(this.regs, this.invalidation);
    const send = (source: "fault" | "completion", address: bigint, data: number) => this.sendInterrupt(source, address, data);
    this.faultEvent = new InterruptEvent(this.regs, "fault", Reg.FECTL, Reg.FEDATA, Reg.FEADDR, Reg.FEUADDR, send);
    this.completionEvent = new InterruptEvent(this.regs, "completion", Reg.IECTL, Reg.IEDATA, Reg.IEADDR, Reg.IEUADDR, send);
    this.faults = new FaultRecording(this.regs, o.faultRecords, this.faultEvent, this.trace, this.stats, this.counters);
    this.pasidRequests = new PasidRequests(translator, translator.scalable, this.memory, this.faults, o.pasidBits);
    this.queue = new InvalidationQueue(o, this.regs, this.memory, this.invalidation, this.faults, this.completionEvent, this.deviceTlbs, this.trace, this.stats, this.cfg, () => this.invalidationWork());
    this.interrupts = new InterruptRemapping(tables, new InterruptEntryCache(), policy, this.faults, this.stats, this.trace, this.cfg);
    if (o.interruptRemapping) this.queue.executor.interruptEntries = this.interrupts.cache;
    translator.scalable?.install(this.invalidation, this.notifiers, this.queue, this.registerInvalidation);
    // Scalable mode's address spaces (per PASID) read the latched root and PASID entries: notifiers/scalable-spaces.ts.
    if (translator.scalable) this.notifiers.scalableMode(translator, translator.scalable);
    const globalCommand = new GlobalCommand(this.regs, o, this.cfg, translator, this.invalidation, this.queue, this.interrupts, this.stats, this.trace, this.writeBuffer);
    this.registerWrites = new RegisterWrites({
      regs: this.regs, windowSize: this.registerWindowSize, stats: this.stats, trace: this.trace, writeBuffer: this.writeBuffer, globalCommand,
      registerInvalidation: this.registerInvalidation, faults: this.faults, faultEvent: this.faultEvent, completionEvent: this.completionEvent, queue: this.queue,
    });
    this.checker = o.checker ? installChecker(o.checker, {
      memory: o.memory, cfg: this.cfg, cachingMode: o.cachingMode, coherent: o.coherent, contextCache: this.contextCache, iotlb: this.iotlb,
      deviceTlbs: this.deviceTlbs, now: () => this.now, writeBuffer: this.writeBuffer, cpuCaches: this.cpuCaches,
    }, this.translator, this.interrupts, this.trace) : undefined;
  }

  /**
   * Host work invalidations have done so far, in the queue budget's units: IOTLB slots and
   * device-TLB slots visited, paging entries the notifiers walked, and 16 per notifier event.
   */
  private invalidationWork(): number {
    const n = this.notifiers.stats;
    return this.iotlb.work + this.contextCache.work + this.deviceTlbs.invalidationWork + n.entriesWalked + 16 * (n.mapEvents + n.unmapEvents + n.deviceIotlbUnmapEvents);
  }

  /** Power-on reset: every register to its reset value, caches and internal state cleared. */
  reset(): void {
    this.regs.reset();
    this.translator.rootTable = 0;
    this.translator.enabled = false;
    this.translator.scalable?.latch(0);
    // After the state above: notifiers re-sync against the reset unit (TE off).
    this.invalidation.everything();
    this.faults.reset();
    this.queue.reset();
    this.deviceTlbs.clear();
    this.interrupts.reset();
    this.views.drain();
    this.checker?.reset();
  }

  // ---- save and restore (state/snapshot.ts) ----

  /**
   * A versioned, JSON-serialisable snapshot of everything guest-visible and cached: registers,
   * latched root and queue state, every cache (CM negative entries included), fault recording,
   * outstanding device-TLB invalidations, the clock, the counters. `JSON.stringify` it to store.
   */
  saveState(): VtdSnapshot {
    return saveUnit(this.parts());
  }

  /**
   * Makes this unit's state the snapshot's (the object, or its JSON text). A snapshot of another
   * format, version or configuration, or a damaged or truncated one, is refused with a
   * SnapshotError naming what is wrong, and the unit is left exactly as it was. Guest memory is
   * the platform's to restore. Host registrations stay: trace listeners, `onInterrupt`, and
   * notifiers, whose address spaces are resynced (UNMAP everything, MAP what the tables map now);
   * the strict checker forgets what it reported.
   */
  restoreState(snapshot: VtdSnapshot | string): void {
    const parts = this.parts();
    const decoded = decodeUnit(parts, snapshot);
    commitUnit(parts, decoded);
    this.translator.scalable?.restored(this.regs.get32(Reg.RTADDR), this.translator.rootTableModeValid);
    this.exactAddress = undefined;
    this.views.drain();
    this.checker?.reset();
    // The notifiers' records describe what this unit's listeners were told: start them afresh.
    if (this.notifiers.active) this.notifiers.everything();
  }

  private parts(): UnitParts {
    return {
      options: this.options, regs: this.regs, translator: this.translator, contextCache: this.contextCache, iotlb: this.iotlb,
      deviceTlbs: this.deviceTlbs, interrupts: this.interrupts, faults: this.faults, queue: this.queue, stats: this.stats,
      counters: this.counters,
    };
  }

  // ---- register interface (the guest CPU) ----

  /**
   * Reads `size` bytes at `offset` from the unit's base. Any size or alignment reads the bytes.
   * The bigint edge of the register interface; platforms use `mmioRead` (numbers).
   */
  readRegister(offset: number, size: 1 | 2 | 4 | 8): bigint {
    if (size !== 8) return BigInt(this.mmioRead(offset, size === 1 || size === 2 ? size : 4));
    this.stats.registerReads++;
    const value = Number.isSafeInteger(offset) ? this.regs.read(offset, 8) : 0n;
    if (this.trace.active) this.trace.emit({ type: "vtd_reg_read", offset, size, value });
    return value;
  }

  /** A guest read of 1, 2 or 4 bytes as a number (unsigned): no bigint on the platform's path. */
  mmioRead(offset: number, size: 1 | 2 | 4): number {
    this.stats.registerReads++;
    const bytes = size === 1 || size === 2 ? size : 4;
    const value = Number.isSafeInteger(offset) ? this.regs.readNumber(offset, bytes) : 0;
    if (this.trace.active) this.trace.emit({ type: "vtd_reg_read", offset, size: bytes, value: BigInt(value) });
    return value;
  }

  /**
   * Writes `size` bytes at `offset`. Aligned 4- and 8-byte writes act; an 8-byte write covering two
   * 32-bit registers writes both. Other sizes and misaligned writes are ignored (and traced).
   * The bigint edge; platforms use `mmioWrite` (numbers).
   */
  writeRegister(offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    let v: bigint;
    try {
      v = typeof value === "bigint" ? value : BigInt(value);
    } catch {
      v = 0n;
    }
    this.registerWrites.write(offset, size, Number(BigInt.asUintN(32, v)), Number(BigInt.asUintN(32, v >> 32n)));
  }

  /** A guest write of 1, 2 or 4 bytes with a number value (the low `size` bytes are used). */
  mmioWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.registerWrites.write(offset, size, (typeof value === "number" ? value : 0) >>> 0, 0);
  }

  private sendInterrupt(source: "fault" | "completion", address: bigint, data: number): void {
    this.stats.interruptsSent++;
    if (this.trace.active) this.trace.emit({ type: "vtd_interrupt", source, address, data });
    try {
      this.options.onInterrupt(address, data);
    } catch {
      // The embedder's handler failed: the interrupt was sent, the unit goes on (its state is the guest's).
      this.stats.interruptHandlerErrors++;
    }
  }

  /**
   * The guest wrote back (CLFLUSH / CLFLUSHOPT) the cache line holding guest-physical `address`:
   * with ECAP.C = 0 and option `cacheLineFlushes`, the unit's table reads see that line's stores
   * from now on (memory/cpu-caches.ts). Otherwise, and for anything but an address, nothing.
   */
  cacheLineFlushed(address: number): void {
    if (this.cpuCaches && typeof address === "number" && address >= 0 && address <= MAX_EXACT) this.cpuCaches.lineFlushed(address);
  }

  /** Moves the unit's clock forward: timed queue work (device-TLB invalidations, stepped processing) runs. */
  advanceTime(ms: number): void {
    this.queue.advanceTime(ms);
  }

  /** The unit's clock in milliseconds since reset. */
  get now(): number {
    return this.queue.now;
  }

  // ---- interrupt requests (devices' MSIs, VT-d ch. 5) ----

  /**
   * A device of requester id `sid` writes `data` to `address` in the interrupt range (an MSI):
   * the compatibility-format message the platform delivers, or the interrupt-remapping fault that
   * blocked it (recorded, fault event raised). With interrupt remapping off (GSTS.IRES = 0) both
   * formats pass unchanged. Anything that is no interrupt request (`sid` not 0..0xFFFF, `address`
   * outside 0xFEE00000-0xFEEFFFFF, `data` not 0..2^32-1, wrong types) gives `{ ok: false, reason:
   * 0 }` and records nothing. Never throws. The bigint edge; platforms use `remapInterrupt`.
   */
  interruptRequest(sid: number, address: bigint | number, data: number): InterruptResult {
    const interrupts = this.interrupts;
    if (!interrupts.request(sid, address, data)) return interruptFailure(interrupts.fault);
    return { ok: true, address: BigInt(interrupts.address), data: interrupts.data };
  }

  /**
   * `interruptRequest` on numbers, allocating nothing: true when an interrupt goes out (its
   * message in `interrupt.address` and `interrupt.data`), false when none does (`interrupt.fault`).
   */
  remapInterrupt(sid: number, address: number, data: number): boolean {
    return this.interrupts.request(sid, address, data);
  }

  /** GSTS.IRES, looked at by the host: no register access is counted or traced. */
  get interruptRemappingEnabled(): boolean {
    return this.interrupts.enabled;
  }

  /** The outcome of the last interrupt request. */
  get interrupt(): { readonly address: number; readonly data: number; readonly fault: number } {
    return this.interrupts;
  }

  // ---- DMA interface (devices) ----

  /**
   * A device of requester id `sid` reads guest memory at `iova`: a 64-bit bus address, as a bigint
   * or a number (an integer below 2^64). Anything else is no request a bus can carry: aborted,
   * nothing recorded. `options` (scalable mode): the request's PASID and privilege (pasid-requests.ts).
   */
  dmaRead(sid: number, iova: bigint | number, into: Uint8Array, options?: DmaRequestOptions): DmaResult {
    if (options !== undefined) return this.pasidRequests.transfer(sid, iova, into, false, options) ?? this.dmaRead(sid, iova, into);
    return typeof iova === "number" && iova >= 0 && iova <= MAX_EXACT && iova === Math.floor(iova) && into instanceof Uint8Array
      ? this.transfer(sid, iova, into, false)
      : this.request(sid, iova, into, false);
  }

  dmaWrite(sid: number, iova: bigint | number, data: Uint8Array, options?: DmaRequestOptions): DmaResult {
    if (options !== undefined) return this.pasidRequests.transfer(sid, iova, data, true, options) ?? this.dmaWrite(sid, iova, data);
    return typeof iova === "number" && iova >= 0 && iova <= MAX_EXACT && iova === Math.floor(iova) && data instanceof Uint8Array
      ? this.transfer(sid, iova, data, true)
      : this.request(sid, iova, data, true);
  }

  /** The rare requests: bigint addresses, addresses at or above 2^53 (kept exact for the fault record), bad arguments. */
  private request(sid: number, iova: unknown, bytes: unknown, write: boolean): DmaResult {
    if (!(bytes instanceof Uint8Array)) return dmaFailure(DMA_ABORT);
    let exact: bigint;
    if (typeof iova === "bigint") exact = iova;
    else if (typeof iova === "number" && Number.isInteger(iova)) exact = BigInt(iova);
    else return dmaFailure(DMA_ABORT);
    if (exact < 0n || exact >= 1n << 64n) return dmaFailure(DMA_ABORT);
    const address = Number(exact);
    if (address <= MAX_EXACT) return this.transfer(sid, address, bytes, write);
    // At or above 2^53 every request faults (beyond every MGAW) or aborts (outside RAM) at once;
    // the rounded number decides which, the exact address goes into the fault record.
    this.exactAddress = exact;
    try {
      return this.transfer(sid, address, bytes, write);
    } finally {
      this.exactAddress = undefined;
    }
  }

  /**
   * Moves bytes page by page: each page is translated; at a fault nothing beyond it moves and the
   * fault is recorded; a target outside RAM aborts the request.
   */
  private transfer(sid: number, address: number, bytes: Uint8Array, write: boolean): DmaResult {
    sid &= 0xffff;
    const translator = this.translator;
    let done = 0;
    const length = bytes.length;
    while (done < length) {
      const reason = translator.translate(sid, address, write);
      if (reason !== 0) return this.fault(sid, address, reason, write);
      let chunk = length - done;
      if (chunk > translator.resultLimit) chunk = translator.resultLimit;
      const output = translator.resultOutput;
      if (!(write ? this.memory.writeFrom(output, bytes, done, chunk) : this.memory.readInto(output, bytes, done, chunk))) return dmaFailure(DMA_ABORT);
      done += chunk;
      address += chunk;
    }
    return DMA_OK;
  }

  /** A translation faulted: the fault is recorded (its own function keeps `transfer` small enough to inline). */
  private fault(sid: number, address: number, reason: number, write: boolean): DmaResult {
    this.faults.record(sid, address, reason, write, this.translator.resultFpd, this.exactAddress);
    return dmaFailure(reason);
  }

  /** Debug and test view of one translation, without recording a fault. Allocates. */
  translateForTest(sid: number, iova: bigint, write: boolean): { ok: true; address: bigint; limit: number } | { ok: false; reason: FaultReason } {
    const reason = this.translator.translate(sid & 0xffff, Number(iova), write);
    if (reason !== 0) return { ok: false, reason };
    return { ok: true, address: BigInt(this.translator.resultOutput), limit: this.translator.resultLimit };
  }

  /** What the context cache and the IOTLB hold, as plain objects (debug views such as `--dump`; allocates). */
  cacheContents(): CacheContents {
    return readCacheContents(this.contextCache, this.iotlb);
  }

  /** Cache occupancy, for tests and the summary. */
  get cacheOccupancy(): { contextEntries: number; iotlbEntries: number } {
    return { contextEntries: this.contextCache.count, iotlbEntries: this.iotlb.count };
  }
}
