/**
 * The guest driver for one VT-d unit: what an OS's IOMMU driver does, on a `Platform`.
 *
 * Initialisation follows Linux's order (see docs in guest-driver-rules): queued invalidation
 * (register-based if ECAP.QI = 0 or QIES never sets), interrupt remapping (ECAP.IR with the
 * queue: interrupt-remapping.ts), root table and SRTP, global context and
 * IOTLB invalidations (skipped with CAP.ESRTPS), the fault interrupt; devices are attached; then
 * TE. The invalidation rules, each of which a test-only switch can suppress:
 * - CM = 1, context entry not-present -> present: device-selective context-cache invalidation
 *   with DID 0, then a domain-selective IOTLB invalidation. CM = 0: a write-buffer flush (RWBF).
 * - CM = 1: a page-selective invalidation of every new second-stage mapping (domain-selective when
 *   CAP.PSI = 0 or the mask would exceed CAP.MAMV). CM = 0, or first stage: a write-buffer flush (RWBF).
 * - Scalable mode (option scalableMode, ECAP.SMTS; scalable-mode.ts): TTM = 01, the 256-bit queue,
 *   PASID tables (pasid-tables.ts, scalable-attachment.ts); CM = 1, PASID entry made present: a
 *   PASID-cache and a PASID-based IOTLB invalidation of the PASID.
 * - ECAP.C = 0: every root, context and page-table store flushed from the CPU cache.
 * - A change to a present entry (unmap, split, detach) is invalidated before the IOVA is reused:
 *   at once (strict) or from the flush queue (lazy).
 * Where Linux is weak this driver does better: it batches page-selective invalidations under
 * CM = 1 (a vIOMMU shadow stays exact), splits superpages without a window, and can wait for
 * invalidations by interrupt instead of spinning.
 *
 * Here: initialisation, translation on/off, domains (domain-creation.ts); the rest in
 * discovery.ts (finding and probing the unit), attachment.ts (devices), mapping.ts (map and
 * unmap), invalidation-submission.ts (strict, deferred-flush scopes, the lazy flush queue).
 */
import { Fsts, Gcmd, Gsts, Pmen, Reg, Rtaddr } from "../spec/registers.ts";
import { TranslationTableMode } from "../spec/scalable.ts";
import { DriverCounters } from "./counters.ts";
import { DeviceAttachments, type AttachOptions } from "./attachment.ts";
import { locateUnit, probeUnit, type UnitCapabilities, type UnitLocation } from "./discovery.ts";
import { Domain, type DomainStage } from "./domain.ts";
import { newDomain } from "./domain-creation.ts";
import { VtdDriverError } from "./errors.ts";
import { FaultHandling } from "./fault-handling.ts";
import { GlobalCommand } from "./global-command.ts";
import { checkRequest, type InvalidationRequest } from "./invalidation.ts";
import { InvalidationSubmission } from "./invalidation-submission.ts";
import { InterruptRemappingTable, interruptSettings, type InterruptTarget, type RemappedInterrupt } from "./interrupt-remapping.ts";
import { Mapping, type Access, type MapOptions } from "./mapping.ts";
import type { DriverOptions, DriverRule, FaultRecord, UnmapMode } from "./options.ts";
import type { Platform } from "./platform.ts";
import { pollUntil, positive, settled } from "./poll.ts";
import { QueuedInvalidation } from "./queued-invalidation.ts";
import { RegisterInvalidation } from "./register-invalidation.ts";
import { RootContextTables } from "./root-context-tables.ts";
import { resolveScalableMode, type ScalableChoice } from "./scalable-mode.ts";
import { ScalableModeTables } from "./pasid-tables.ts";
import { TableMemory } from "./table-memory.ts";
import { UnitRegisters } from "./unit-registers.ts";

export type { Access, MapOptions, PageSize } from "./mapping.ts";
export type { AttachOptions } from "./attachment.ts";
export type { InterruptTarget, RemappedInterrupt } from "./interrupt-remapping.ts";

export interface DriverCreateOptions extends DriverOptions, UnitLocation {}

export class VtdDriver {
  readonly counters = new DriverCounters();
  readonly caps: UnitCapabilities;
  readonly regs: UnitRegisters;
  readonly mode: UnmapMode;
  /** Why queued invalidation is not used, when it is not. */
  queueFallback: string | undefined;
  /** Why scalable mode was asked for and is not used (legacy mode instead), when so. */
  scalableFallback: string | undefined;
  /** Errors from work done in the background (timer-driven flushes). */
  readonly backgroundErrors: unknown[] = [];

  private readonly platform: Platform;
  private readonly options: DriverOptions;
  private readonly registerTimeoutMs: number;
  private readonly suppressed: ReadonlySet<DriverRule>;
  private readonly gcmd: GlobalCommand;
  private readonly tableMemory: TableMemory;
  private readonly faults: FaultHandling;
  private queue: QueuedInvalidation | undefined;
  private readonly submission: InvalidationSubmission;
  private readonly mapping: Mapping;
  private rootContext: RootContextTables | ScalableModeTables | undefined;
  private scalable: ScalableChoice;
  private interruptTable: InterruptRemappingTable | undefined;
  private readonly domains = new Map<number, Domain>();
  private readonly attachments: DeviceAttachments;
  private initialised = false;

  /** Finds the unit (from `base`, `dmar` or the platform's DMAR table: discovery.ts) and probes it. */
  static create(platform: Platform, options: DriverCreateOptions = {}): VtdDriver {
    const { base, scope } = locateUnit(platform, options);
    return new VtdDriver(platform, base, options, scope);
  }

  constructor(platform: Platform, base: number, options: DriverOptions = {}, deviceScope?: readonly number[]) {
    this.platform = platform;
    this.options = options;
    this.suppressed = new Set(options.testOnly?.suppress ?? []);
    this.mode = options.mode ?? "strict";
    if (this.mode !== "strict" && this.mode !== "lazy") throw new VtdDriverError("bad-argument", `mode must be "strict" or "lazy", not ${String(this.mode)}`);
    this.caps = probeUnit(platform.mmio, base);
    this.regs = new UnitRegisters(base, platform.mmio, this.counters);
    this.registerTimeoutMs = options.registerTimeoutMs ?? 1000;
    this.scalable = resolveScalableMode(this.caps, options);
    this.scalableFallback = this.scalable.fallback;
    this.gcmd = new GlobalCommand(this.regs, platform.clock, this.counters, this.registerTimeoutMs);
    this.tableMemory = new TableMemory(platform.memory, platform.allocator, platform.cache, this.counters,
      !this.caps.coherent && !this.suppressed.has("cpu-cache-flush"));
    this.faults = new FaultHandling(this.regs, this.caps, this.counters, options.onFault);
    const keeps = (rule: DriverRule) => this.keeps(rule);
    this.submission = new InvalidationSubmission(this.caps, this.counters, this.gcmd, keeps, this.domains);
    this.mapping = new Mapping(this.caps, this.counters, this.submission, keeps, (domain) => {
      this.requireInitialised();
      this.requireDomain(domain);
    });
    this.attachments = new DeviceAttachments(this.caps, this.submission, keeps, deviceScope ? new Set(deviceScope) : undefined);
  }

  private keeps(rule: DriverRule): boolean {
    return !this.suppressed.has(rule);
  }

  get queuedInvalidation(): boolean {
    return this.queue !== undefined;
  }

  /** RTADDR.TTM = 01 was programmed: scalable-mode tables, the 256-bit queue. */
  get scalableMode(): boolean {
    return this.scalable.enabled;
  }

  /** The stage new domains translate with ("second" in legacy mode). */
  get domainStage(): DomainStage {
    return this.scalable.enabled ? this.scalable.stage : "second";
  }

  // ---- initialisation ----

  /** Steps 2-4 of Linux's order: old faults cleared, QI, root table, global invalidations, fault interrupt. */
  initialise(): this {
    if (this.initialised) throw new VtdDriverError("bad-argument", "initialise() called twice");
    const o = this.options;
    this.faults.handle();
    // Errors an earlier owner left (all RW1C).
    this.regs.write32(Reg.FSTS, Number(Fsts.PFO | Fsts.IQE | Fsts.ICE | Fsts.ITE));
    const timeouts = { registerTimeoutMs: this.registerTimeoutMs, syncWaitTimeoutMs: o.syncWaitTimeoutMs ?? 120_000 };
    if (!this.caps.queuedInvalidation) this.queueFallback = "ECAP.QI = 0";
    else if (o.registerInvalidation) this.queueFallback = "register invalidation requested";
    else this.queue = this.startQueue(timeouts);
    if (this.scalable.enabled && !this.queue) {
      this.scalable = { enabled: false, stage: "second", fallback: `no queued invalidation (${this.queueFallback})` };
      this.scalableFallback = this.scalable.fallback;
    }
    this.submission.useInvalidator(this.queue ?? new RegisterInvalidation(this.regs, this.caps, this.platform.clock, this.counters, timeouts.registerTimeoutMs));
    // Interrupt remapping before DMA remapping, once the queue is on (Linux's irq_remapping.c).
    if (this.caps.interruptRemapping && this.queue && o.interruptRemapping !== false) {
      this.interruptTable = new InterruptRemappingTable(this.regs, this.caps, this.gcmd, this.tableMemory, this.platform.allocator,
        (requests) => this.submission.run(requests), interruptSettings(o.interruptRemapping, this.keeps("iec-invalidation")));
      this.interruptTable.enable();
    }

    // Scalable mode: RTADDR.TTM = 01 (VT-d §11.4.6), and the PASID cache is emptied after SRTP too (as Linux 6.1).
    const sm = this.scalable.enabled;
    this.rootContext = sm ? new ScalableModeTables(this.tableMemory) : new RootContextTables(this.tableMemory);
    this.regs.write64(Reg.RTADDR, BigInt(this.rootContext.root) | (sm ? BigInt(TranslationTableMode.Scalable) << BigInt(Rtaddr.TTM.shift) : 0n));
    this.attachments.useTables(this.rootContext);
    this.gcmd.setRootTablePointer();
    if (!this.caps.esrtps && this.keeps("root-table-invalidation")) {
      this.submission.run(sm ? [{ kind: "context-global" }, { kind: "pasid-cache-global" }, { kind: "iotlb-global" }] : [{ kind: "context-global" }, { kind: "iotlb-global" }]);
    }

    this.faults.programInterrupt(this.platform.interrupts.allocateMsi("fault", () => this.handleFaults()));
    const queue = this.queue;
    if (queue) queue.programCompletionInterrupt(this.platform.interrupts.allocateMsi("completion", () => queue.onCompletionInterrupt()));

    if (this.mode === "lazy") {
      this.submission.startFlushQueue(this.platform.clock, {
        highWater: positive("flushQueueHighWater", o.flushQueueHighWater ?? 250),
        timeoutMs: positive("flushQueueTimeoutMs", o.flushQueueTimeoutMs ?? 10),
        granularity: o.flushQueueGranularity ?? (this.caps.cachingMode ? "page" : "domain"),
      }, (error) => this.backgroundErrors.push(error));
    }
    this.initialised = true;
    return this;
  }

  /** Queued invalidation on (256-bit descriptors in scalable mode), or undefined with `queueFallback` saying why. */
  private startQueue(timeouts: { registerTimeoutMs: number; syncWaitTimeoutMs: number }): QueuedInvalidation | undefined {
    const o = this.options, p = this.platform;
    const queue = new QueuedInvalidation(this.regs, p.memory, p.allocator, p.clock, this.counters, this.caps, this.gcmd, {
      sizeOrder: o.queueSizeOrder ?? 0, wide: this.scalable.enabled, ...timeouts, iteRetries: o.iteRetries ?? 1,
      ...(o.testOnly?.mangleDescriptor ? { mangleDescriptor: o.testOnly.mangleDescriptor } : {}),
      ...(o.onQueueError ? { onQueueError: o.onQueueError } : {}),
    });
    if (queue.enable()) return queue;
    this.queueFallback = "GSTS.QIES did not set after GCMD.QIE";
    return undefined;
  }

  /** Step 6: (WBF if RWBF) TE, poll TES; protected memory regions off. */
  enableTranslation(): this {
    this.requireInitialised();
    if (this.caps.rwbf && this.keeps("write-buffer-flush")) this.gcmd.flushWriteBuffer();
    this.gcmd.setPersistent(Gcmd.TE, Gsts.TES, true, "TE");
    if (this.caps.protectedLowMemory || this.caps.protectedHighMemory) {
      if (this.regs.read32(Reg.PMEN) & Number(Pmen.EPM)) {
        this.regs.write32(Reg.PMEN, 0);
        pollUntil(this.platform.clock, this.counters, this.registerTimeoutMs,
          () => (this.regs.read32(Reg.PMEN) & Number(Pmen.PRS)) === 0, "PMEN.PRS clearing");
      }
    }
    return this;
  }

  disableTranslation(): void {
    this.gcmd.setPersistent(Gcmd.TE, Gsts.TES, false, "TE");
  }

  /** Discovery, initialisation and TE in one call. */
  static start(platform: Platform, options: DriverCreateOptions = {}): VtdDriver {
    return VtdDriver.create(platform, options).initialise().enableTranslation();
  }

  private requireInitialised(): void {
    if (!this.initialised) throw new VtdDriverError("bad-argument", "the driver is not initialised: call initialise() first");
  }

  // ---- domains and devices ----

  /** A new domain; in scalable mode of the stage the options chose (`domainStage`). */
  createDomain(options: { addressWidth?: 39 | 48 } = {}): Domain {
    this.requireInitialised();
    const domain = newDomain(this.caps, this.tableMemory, this.domains, this.domainStage, options.addressWidth ?? this.options.addressWidth);
    this.domains.set(domain.did, domain);
    return domain;
  }

  /** Frees a domain with no devices; its mappings go with it. */
  destroyDomain(domain: Domain): void {
    this.requireDomain(domain);
    if (domain.devices.size > 0) throw new VtdDriverError("bad-argument", `domain ${domain.did} still has devices attached`);
    this.flush();
    for (const page of domain.tables.pages()) this.tableMemory.freeTable(page);
    this.domains.delete(domain.did);
  }

  /** Points `sid`'s context entry at the domain (TT 0, or 1 with deviceTlb, or 2 with passThrough). */
  attach(sid: number, domain: Domain, options: AttachOptions = {}): void {
    this.requireInitialised();
    this.requireDomain(domain);
    this.attachments.attach(sid, domain, options, this.queue !== undefined);
  }

  /** Clears `sid`'s context entry and invalidates what the unit and the endpoint cached for it. */
  detach(sid: number): void {
    this.requireInitialised();
    this.attachments.detach(sid);
  }

  /** Every page holding a root, context, PASID-directory, PASID or page table (what ECAP.C = 0 makes the driver flush). */
  tablePages(): number[] {
    const pages = [...(this.rootContext?.pages() ?? [])];
    for (const domain of this.domains.values()) pages.push(...domain.tables.pages());
    return pages;
  }

  attachedDomain(sid: number): Domain | undefined {
    return this.attachments.domainOf(sid);
  }

  private requireDomain(domain: Domain): void {
    if (!(domain instanceof Domain) || this.domains.get(domain.did) !== domain) {
      throw new VtdDriverError("bad-argument", "not a domain of this driver (destroyed, or created by another driver)");
    }
  }

  // ---- mapping (mapping.ts) ----

  /** Maps [iova, iova + length) to phys. A range operation: one invalidation (CM = 1) for the whole range. */
  map(domain: Domain, iova: number, phys: number, length: number, access: Access, options: MapOptions = {}): void {
    this.mapping.map(domain, iova, phys, length, access, options);
  }

  /**
   * Maps a buffer at an IOVA the driver picks (what dma_map does); returns the device address
   * (keeping the buffer's offset within its page). `dmaMask`: the highest address the device can use.
   */
  mapBuffer(domain: Domain, phys: number, length: number, access: Access, options: MapOptions & { dmaMask?: number } = {}): number {
    return this.mapping.mapBuffer(domain, phys, length, access, options);
  }

  /** New permissions for mapped [iova, iova + length); returns after the invalidation (or with it in the open deferred-flush scope). */
  protect(domain: Domain, iova: number, length: number, access: Access): void {
    this.requireInitialised();
    this.mapping.protect(domain, iova, length, access);
  }

  /** Unmaps [iova, iova + length), every page of which must be mapped. Strict: returns after the invalidation. */
  unmap(domain: Domain, iova: number, length: number): void {
    this.mapping.unmap(domain, iova, length, false);
  }

  /** Unmaps a buffer mapped with mapBuffer (same length); its IOVA is freed once invalidated. */
  unmapBuffer(domain: Domain, dmaAddress: number, length: number): void {
    this.mapping.unmapBuffer(domain, dmaAddress, length, false);
  }

  /** Strict unmap that waits for the invalidation by interrupt: resolves when the unit (and every endpoint) is done. */
  unmapAsync(domain: Domain, iova: number, length: number): Promise<void> {
    return settled(() => this.mapping.unmap(domain, iova, length, true));
  }

  unmapBufferAsync(domain: Domain, dmaAddress: number, length: number): Promise<void> {
    return settled(() => this.mapping.unmapBuffer(domain, dmaAddress, length, true));
  }

  // ---- invalidation (invalidation-submission.ts) ----

  /**
   * A deferred-flush scope: every invalidation the operations in `work` need is collected
   * (touching ranges merged) and carried out once, in one submission, when it returns; IOVAs
   * they free are reused only after that. Until then the unit may use stale translations.
   */
  deferFlush<T>(work: () => T): T {
    return this.submission.deferFlush(work);
  }

  /** As deferFlush, waiting for the final invalidation by interrupt. */
  deferFlushAsync<T>(work: () => T): Promise<T> {
    return this.submission.deferFlushAsync(work);
  }

  /** Lazy mode: invalidates everything in the flush queue now (polling) and frees the IOVAs. */
  flush(): void {
    this.submission.flush();
  }

  flushAsync(): Promise<void> {
    return this.submission.flushAsync();
  }

  get pendingUnmaps(): number {
    return this.submission.pendingUnmaps;
  }

  /** Runs a batch of invalidations directly (tests and tools); a request no descriptor can carry is refused, naming it. */
  runInvalidations(requests: InvalidationRequest[]): void {
    this.requireInitialised();
    for (const r of requests) checkRequest(r, this.scalable.enabled);
    this.submission.run(requests);
  }

  runInvalidationsAsync(requests: InvalidationRequest[]): Promise<void> {
    this.requireInitialised();
    for (const r of requests) checkRequest(r, this.scalable.enabled);
    return this.submission.runAsync(requests);
  }

  // ---- interrupt remapping (interrupt-remapping.ts) ----

  /** Interrupt remapping is on (GSTS.IRES): the unit offers it, the queue is on, it was not turned off. */
  get interruptRemapping(): boolean {
    return this.interruptTable !== undefined;
  }

  /** The interrupt remapping table's base, when interrupt remapping is on. */
  get interruptTableAddress(): number | undefined {
    return this.interruptTable?.table;
  }

  /** An IRTE for `sid`'s MSI to `target`; the remappable-format MSI address and data to program into the device. */
  allocateInterrupt(sid: number, target: InterruptTarget): RemappedInterrupt {
    return this.requireInterruptTable().allocate(sid, target);
  }

  /** Moves an allocated interrupt to another vector or CPU (IRTE rewritten, its entry-cache entry invalidated). */
  retargetInterrupt(interrupt: RemappedInterrupt, target: InterruptTarget): void {
    this.requireInterruptTable().retarget(interrupt, target);
  }

  freeInterrupt(interrupt: RemappedInterrupt): void {
    this.requireInterruptTable().free(interrupt);
  }

  private requireInterruptTable(): InterruptRemappingTable {
    this.requireInitialised();
    if (!this.interruptTable) {
      throw new VtdDriverError("unsupported", `interrupt remapping is off (ECAP.IR ${this.caps.interruptRemapping ? 1 : 0}, queued invalidation ${this.queue ? "on" : "off"})`);
    }
    return this.interruptTable;
  }

  // ---- faults ----

  /** Reads, reports and clears pending fault records (also done on every fault interrupt). */
  handleFaults(): FaultRecord[] {
    const found = this.faults.handle();
    this.queue?.service();
    return found;
  }
}

