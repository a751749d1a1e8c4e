/**
 * The guest driver for one VT-d unit: what an OS's IOMMU driver does, on a `Platform`.
 *
 * Initialisation follows Linux's order (see docs in guest-driver-rules): queued invalidation
 * (register-based if ECAP.QI = 0 or QIES never sets), root table and SRTP, global context and
 * IOTLB invalidations (skipped with CAP.ESRTPS), the fault interrupt; devices are attached; then
 * TE. The invalidation rules, each of which a test-only switch can suppress:
 * - CM = 1, context entry not-present -> present: device-selective context-cache invalidation
 *   with DID 0, then a domain-selective IOTLB invalidation. CM = 0: a write-buffer flush (RWBF).
 * - CM = 1: a page-selective invalidation of every new mapping (domain-selective when CAP.PSI = 0
 *   or the mask would exceed CAP.MAMV). CM = 0: a write-buffer flush (RWBF).
 * - ECAP.C = 0: every root, context and page-table store flushed from the CPU cache.
 * - A change to a present entry (unmap, split, detach) is invalidated before the IOVA is reused:
 *   at once (strict) or from the flush queue (lazy).
 * Where Linux is weak this driver does better: it batches page-selective invalidations under
 * CM = 1 (a vIOMMU shadow stays exact), splits superpages without a window, and can wait for
 * invalidations by interrupt instead of spinning.
 */
import { awLevels, awWidth, TranslationType } from "../spec/entries.ts";
import { Fsts, Gcmd, Gsts, Pmen, Reg, SAGAW_48_BIT } from "../spec/registers.ts";
import { DriverCounters } from "./counters.ts";
import { parseDmar, probeUnit, type UnitCapabilities } from "./discovery.ts";
import { DeferredFlush } from "./deferred-flush.ts";
import { Domain } from "./domain.ts";
import { DomainPageTables } from "./domain-page-tables.ts";
import { bdf, hex, VtdDriverError } from "./errors.ts";
import { FaultHandling } from "./fault-handling.ts";
import { FlushQueue, type FlushQueueEntry } from "./flush-queue.ts";
import { GlobalCommand } from "./global-command.ts";
import { deviceTlbEverything, deviceTlbRange, iotlbRange, type InvalidationRequest, type Invalidator } from "./invalidation.ts";
import { IovaAllocator } from "./iova-allocator.ts";
import type { DriverOptions, DriverRule, FaultRecord, UnmapMode } from "./options.ts";
import type { Platform } from "./platform.ts";
import { pollUntil } from "./poll.ts";
import { QueuedInvalidation } from "./queued-invalidation.ts";
import { RegisterInvalidation } from "./register-invalidation.ts";
import { RootContextTables } from "./root-context-tables.ts";
import { TableMemory } from "./table-memory.ts";
import { UnitRegisters } from "./unit-registers.ts";

const PAGE = 4096;
const R = 1, W = 2;

export type Access = "r" | "w" | "rw";
export type PageSize = "4K" | "2M" | "1G";

export interface MapOptions {
  /** The largest page the mapping may use. Default 1G (what CAP.SLLPS allows). */
  largestPage?: PageSize;
}

export interface AttachOptions {
  /** Context TT = 1: the endpoint caches translations (ATS); unmaps also invalidate its device-TLB. Needs ECAP.DT and the queue. */
  deviceTlb?: boolean;
  /** Context TT = 2: untranslated pass-through (ECAP.PT). */
  passThrough?: boolean;
}

export interface DriverCreateOptions extends DriverOptions {
  /** Register base of the unit. Default: the first DRHD of `dmar`, or of the platform's DMAR table. */
  base?: number;
  /** ACPI DMAR table bytes. */
  dmar?: Uint8Array;
}

interface Attachment {
  domain: Domain;
  deviceTlb: boolean;
  passThrough: boolean;
}

const LARGEST_LEVEL: Record<PageSize, number> = { "4K": 1, "2M": 2, "1G": 3 };

export class VtdDriver {
  readonly counters = new DriverCounters();
  readonly caps: UnitCapabilities;
  readonly regs: UnitRegisters;
  readonly mode: UnmapMode;
  /** Why queued invalidation is not used, when it is not. */
  queueFallback: string | undefined;
  /** Errors from work done in the background (timer-driven flushes). */
  readonly backgroundErrors: unknown[] = [];

  private readonly platform: Platform;
  private readonly options: DriverOptions;
  private readonly suppressed: ReadonlySet<DriverRule>;
  private readonly gcmd: GlobalCommand;
  private readonly tableMemory: TableMemory;
  private readonly faults: FaultHandling;
  private queue: QueuedInvalidation | undefined;
  private invalidator!: Invalidator;
  private rootContext: RootContextTables | undefined;
  private flushQueue: FlushQueue | undefined;
  private readonly domains = new Map<number, Domain>();
  private readonly attached = new Map<number, Attachment>();
  private readonly deviceScope: ReadonlySet<number> | undefined;
  private readonly deferred = new DeferredFlush();
  private initialised = false;

  /** Finds the unit (from `base`, `dmar` or the platform's DMAR table) and probes it. */
  static create(platform: Platform, options: DriverCreateOptions = {}): VtdDriver {
    let base = options.base;
    let scope: number[] | undefined;
    const dmar = options.dmar ?? (base === undefined ? platform.acpiTable?.("DMAR") : undefined);
    if (dmar) {
      const unit = parseDmar(dmar).units[0]!;
      base ??= unit.registerBase;
      if (!unit.includePciAll) scope = unit.scopes.flatMap((s) => (s.sid === undefined ? [] : [s.sid]));
    }
    if (base === undefined) throw new VtdDriverError("no-unit", "no VT-d unit: no register base given and the platform has no DMAR table");
    return new VtdDriver(platform, base, options, scope);
  }

  constructor(platform: Platform, base: number, options: DriverOptions = {}, deviceScope?: readonly number[]) {
    this.platform = platform;
    this.options = options;
    this.suppressed = new Set(options.testOnly?.suppress ?? []);
    this.deviceScope = deviceScope ? new Set(deviceScope) : undefined;
    this.mode = options.mode ?? "strict";
    if (this.mode !== "strict" && this.mode !== "lazy") throw new VtdDriverError("bad-argument", `mode must be "strict" or "lazy", not ${String(this.mode)}`);
    this.caps = probeUnit(platform.mmio, base);
    this.regs = new UnitRegisters(base, platform.mmio, this.counters);
    this.gcmd = new GlobalCommand(this.regs, platform.clock, this.counters, options.registerTimeoutMs ?? 1000);
    this.tableMemory = new TableMemory(platform.memory, platform.allocator, platform.cache, this.counters,
      !this.caps.coherent && !this.suppressed.has("cpu-cache-flush"));
    this.faults = new FaultHandling(this.regs, this.caps, this.counters, options.onFault);
  }

  private keeps(rule: DriverRule): boolean {
    return !this.suppressed.has(rule);
  }

  get queuedInvalidation(): boolean {
    return this.queue !== undefined;
  }

  // ---- initialisation ----

  /** Steps 2-4 of Linux's order: old faults cleared, QI, root table, global invalidations, fault interrupt. */
  initialise(): this {
    if (this.initialised) throw new VtdDriverError("bad-argument", "initialise() called twice");
    const o = this.options;
    this.faults.handle();
    // Errors an earlier owner left (all RW1C).
    this.regs.write32(Reg.FSTS, Number(Fsts.PFO | Fsts.IQE | Fsts.ICE | Fsts.ITE));
    const timeouts = { registerTimeoutMs: o.registerTimeoutMs ?? 1000, syncWaitTimeoutMs: o.syncWaitTimeoutMs ?? 120_000 };
    if (!this.caps.queuedInvalidation) {
      this.queueFallback = "ECAP.QI = 0";
    } else if (o.registerInvalidation) {
      this.queueFallback = "register invalidation requested";
    } else {
      const queue = new QueuedInvalidation(this.regs, this.platform.memory, this.platform.allocator, this.platform.clock, this.counters, this.caps,
        this.gcmd, {
          sizeOrder: o.queueSizeOrder ?? 0,
          ...timeouts,
          iteRetries: o.iteRetries ?? 1,
          ...(o.testOnly?.mangleDescriptor ? { mangleDescriptor: o.testOnly.mangleDescriptor } : {}),
          ...(o.onQueueError ? { onQueueError: o.onQueueError } : {}),
        });
      if (queue.enable()) this.queue = queue;
      else this.queueFallback = "GSTS.QIES did not set after GCMD.QIE";
    }
    this.invalidator = this.queue ?? new RegisterInvalidation(this.regs, this.caps, this.platform.clock, this.counters, timeouts.registerTimeoutMs);

    this.rootContext = new RootContextTables(this.tableMemory);
    this.regs.write64(Reg.RTADDR, BigInt(this.rootContext.root));
    this.gcmd.setRootTablePointer();
    if (!this.caps.esrtps) this.invalidator.run([{ kind: "context-global" }, { kind: "iotlb-global" }]);

    this.faults.programInterrupt(this.platform.interrupts.allocateMsi("fault", () => this.onFaultInterrupt()));
    const queue = this.queue;
    if (queue) queue.programCompletionInterrupt(this.platform.interrupts.allocateMsi("completion", () => queue.onCompletionInterrupt()));

    if (this.mode === "lazy") {
      const granularity = o.flushQueueGranularity ?? (this.caps.cachingMode ? "page" : "domain");
      this.flushQueue = new FlushQueue(this.platform.clock, positive("flushQueueHighWater", o.flushQueueHighWater ?? 250),
        positive("flushQueueTimeoutMs", o.flushQueueTimeoutMs ?? 10),
        (entries) => this.invalidator.run(this.flushRequests(entries, granularity)),
        (entries) => this.invalidator.runAsync(this.flushRequests(entries, granularity)),
        (error) => this.backgroundErrors.push(error));
    }
    this.initialised = true;
    return this;
  }

  /** Step 6: (WBF if RWBF) TE, poll TES; protected memory regions off. */
  enableTranslation(): this {
    this.requireInitialised();
    if (this.caps.rwbf && this.keeps("write-buffer-flush")) this.gcmd.flushWriteBuffer();
    this.gcmd.setPersistent(Gcmd.TE, Gsts.TES, true, "TE");
    if (this.caps.protectedLowMemory || this.caps.protectedHighMemory) {
      if (this.regs.read32(Reg.PMEN) & Number(Pmen.EPM)) {
        this.regs.write32(Reg.PMEN, 0);
        pollUntil(this.platform.clock, this.counters, this.options.registerTimeoutMs ?? 1000,
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

  createDomain(options: { addressWidth?: 39 | 48 } = {}): Domain {
    this.requireInitialised();
    const wanted = options.addressWidth ?? this.options.addressWidth;
    let aw: number;
    if (wanted === 39) aw = 1;
    else if (wanted === 48) aw = 2;
    else if (wanted !== undefined) throw new VtdDriverError("bad-argument", `addressWidth ${String(wanted)}: expected 39 or 48`);
    else aw = this.caps.sagaw & SAGAW_48_BIT ? 2 : 1;
    if (((this.caps.sagaw >> aw) & 1) === 0) {
      throw new VtdDriverError("unsupported", `a ${awWidth(aw)}-bit domain: the unit's SAGAW (${hex(this.caps.sagaw)}) does not offer it`);
    }
    const maxDid = 2 ** this.caps.domainIdBits - 1;
    let did = 1; // DID 0 is reserved (caching mode tags not-present entries with it)
    while (this.domains.has(did) && did <= maxDid) did++;
    if (did > maxDid) throw new VtdDriverError("out-of-space", `all ${maxDid} domain ids are in use`);
    const width = Math.min(awWidth(aw), this.caps.mgawBits);
    const largestLeaf = this.caps.superpage1G && this.caps.superpage2M ? 3 : this.caps.superpage2M ? 2 : 1;
    const domain = new Domain(did, aw, width, new DomainPageTables(this.tableMemory, awLevels(aw), largestLeaf), new IovaAllocator(PAGE, 2 ** width));
    this.domains.set(did, domain);
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
    this.checkSid(sid);
    if (this.attached.has(sid)) throw new VtdDriverError("already-attached", `device ${bdf(sid)} is already attached to domain ${this.attached.get(sid)!.domain.did}`);
    const deviceTlb = options.deviceTlb === true, passThrough = options.passThrough === true;
    if (deviceTlb && passThrough) throw new VtdDriverError("bad-argument", "deviceTlb and passThrough exclude each other");
    if (deviceTlb && (!this.caps.deviceTlb || !this.queue)) {
      throw new VtdDriverError("unsupported", `device ${bdf(sid)} with a device-TLB: needs ECAP.DT (${this.caps.deviceTlb ? 1 : 0}) and queued invalidation (${this.queue ? "on" : "off"})`);
    }
    if (passThrough && !this.caps.passThrough) throw new VtdDriverError("unsupported", "pass-through: ECAP.PT = 0");
    const translationType = passThrough ? TranslationType.PassThrough : deviceTlb ? TranslationType.DeviceTlb : TranslationType.Untranslated;
    // Pass-through ignores the tables; AW is then the largest the unit supports (VT-d §9.3).
    const aw = passThrough ? (this.caps.sagaw & SAGAW_48_BIT ? 2 : 1) : domain.aw;
    this.rootContext!.write(sid, { tableRoot: domain.tables.root, aw, did: domain.did, translationType });
    this.attached.set(sid, { domain, deviceTlb, passThrough });
    domain.devices.add(sid);
    if (deviceTlb) domain.deviceTlbDevices.add(sid);
    if (this.caps.cachingMode) {
      // Not-present -> present under CM: the unit may hold a not-present entry tagged with DID 0.
      if (this.keeps("cm-context-invalidation")) {
        this.invalidate([{ kind: "context-device", did: 0, sid, fm: 0 }, { kind: "iotlb-domain", did: domain.did }]);
      }
    } else {
      this.writeBufferFlush();
    }
  }

  /** Clears `sid`'s context entry and invalidates what the unit and the endpoint cached for it. */
  detach(sid: number): void {
    this.requireInitialised();
    this.checkSid(sid);
    const attachment = this.attached.get(sid);
    if (!attachment) throw new VtdDriverError("not-attached", `device ${bdf(sid)} is not attached`);
    const { domain } = attachment;
    this.rootContext!.clear(sid);
    this.attached.delete(sid);
    domain.devices.delete(sid);
    domain.deviceTlbDevices.delete(sid);
    if (this.keeps("unmap-invalidation")) {
      const requests: InvalidationRequest[] = [{ kind: "context-device", did: domain.did, sid, fm: 0 }, { kind: "iotlb-domain", did: domain.did }];
      if (attachment.deviceTlb) requests.push(deviceTlbEverything(sid));
      this.invalidate(requests);
    }
  }

  /** Every page holding a root, context or second-stage table (what ECAP.C = 0 makes the driver flush). */
  tablePages(): number[] {
    const pages = [...(this.rootContext?.pages() ?? [])];
    for (const domain of this.domains.values()) pages.push(...domain.tables.pages());
    return pages;
  }

  attachedDomain(sid: number): Domain | undefined {
    return this.attached.get(sid)?.domain;
  }

  private checkSid(sid: number): void {
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new VtdDriverError("bad-argument", `source-id ${String(sid)}: expected 0..0xffff`);
    if (this.deviceScope && !this.deviceScope.has(sid)) {
      throw new VtdDriverError("unknown-device", `device ${bdf(sid)} is not behind this unit (DMAR device scope: ${[...this.deviceScope].map(bdf).join(", ") || "none"})`);
    }
  }

  private requireDomain(domain: Domain): void {
    if (!(domain instanceof Domain) || this.domains.get(domain.did) !== domain) {
      throw new VtdDriverError("bad-argument", "not a domain of this driver (destroyed, or created by another driver)");
    }
  }

  // ---- mapping ----

  /** Maps [iova, iova + length) to phys. A range operation: one invalidation (CM = 1) for the whole range. */
  map(domain: Domain, iova: number, phys: number, length: number, access: Access, options: MapOptions = {}): void {
    const permission = this.checkMap(domain, iova, phys, length, access, options);
    this.settlePendingUnmaps(domain, iova, length);
    const mapped = domain.tables.firstMapped(iova, iova + length);
    if (mapped >= 0) throw new VtdDriverError("overlap", `map ${hex(iova)}+${hex(length)} in domain ${domain.did}: ${hex(mapped)} is already mapped`);
    domain.iovas.reserve(iova, length);
    this.install(domain, iova, phys, length, permission, options);
  }

  /**
   * Maps a buffer at an IOVA the driver picks (what dma_map does); returns the device address
   * (keeping the buffer's offset within its page). `dmaMask`: the highest address the device can use.
   */
  mapBuffer(domain: Domain, phys: number, length: number, access: Access, options: MapOptions & { dmaMask?: number } = {}): number {
    if (!Number.isSafeInteger(phys) || phys < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new VtdDriverError("bad-argument", `mapBuffer: phys ${String(phys)} and length ${String(length)} must be whole, length above 0`);
    }
    const start = phys - (phys % PAGE);
    const size = Math.ceil((phys + length) / PAGE) * PAGE - start;
    const permission = this.checkMap(domain, 0, start, size, access, options);
    const limit = options.dmaMask === undefined ? domain.iovas.end : Math.min(domain.iovas.end, options.dmaMask + 1);
    const iova = domain.iovas.allocate(size, limit);
    this.install(domain, iova, start, size, permission, options);
    return iova + (phys - start);
  }

  private install(domain: Domain, iova: number, phys: number, length: number, permission: number, options: MapOptions): void {
    domain.tables.map(iova, phys, length, permission, LARGEST_LEVEL[options.largestPage ?? "1G"]);
    this.counters.mapCalls++;
    this.counters.bytesMapped += length;
    if (this.caps.cachingMode) {
      // The unit may have cached "not present" for these addresses.
      if (this.keeps("cm-map-invalidation")) this.invalidateRange(domain, iova, length, false, false);
    } else {
      this.writeBufferFlush();
    }
  }

  private checkMap(domain: Domain, iova: number, phys: number, length: number, access: Access, options: MapOptions): number {
    this.requireInitialised();
    this.requireDomain(domain);
    const permission = access === "r" ? R : access === "w" ? W : access === "rw" ? R | W : -1;
    if (permission < 0) throw new VtdDriverError("bad-argument", `access ${String(access)}: expected "r", "w" or "rw"`);
    if (options.largestPage !== undefined && !(options.largestPage in LARGEST_LEVEL)) {
      throw new VtdDriverError("bad-argument", `largestPage ${String(options.largestPage)}: expected 4K, 2M or 1G`);
    }
    for (const [name, value] of [["iova", iova], ["phys", phys], ["length", length]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw new VtdDriverError("bad-argument", `${name} ${String(value)}: expected a whole number of bytes`);
      if (value % PAGE !== 0) throw new VtdDriverError("unaligned", `${name} ${hex(value)} is not 4 KiB aligned`);
    }
    if (length === 0) throw new VtdDriverError("bad-argument", "length 0: nothing to map");
    if (iova + length > 2 ** domain.widthBits) {
      throw new VtdDriverError("bad-argument", `iova ${hex(iova)}+${hex(length)} is beyond the domain's ${domain.widthBits}-bit address space`);
    }
    if (phys + length > 2 ** this.caps.mgawBits) {
      throw new VtdDriverError("bad-argument", `phys ${hex(phys)}+${hex(length)} is beyond the unit's ${this.caps.mgawBits}-bit address width`);
    }
    return permission;
  }

  /** Unmaps [iova, iova + length), every page of which must be mapped. Strict: returns after the invalidation. */
  unmap(domain: Domain, iova: number, length: number): void {
    this.retire(domain, iova, length, () => domain.iovas.releaseWithin(iova, length), false);
  }

  /** Unmaps a buffer mapped with mapBuffer (same length); its IOVA is freed once invalidated. */
  unmapBuffer(domain: Domain, dmaAddress: number, length: number): void {
    const { start, size } = this.bufferPages(dmaAddress, length);
    this.retire(domain, start, size, () => domain.iovas.release(start, size), false);
  }

  /** Strict unmap that waits for the invalidation by interrupt: resolves when the unit (and every endpoint) is done. */
  unmapAsync(domain: Domain, iova: number, length: number): Promise<void> {
    try {
      return this.retire(domain, iova, length, () => domain.iovas.releaseWithin(iova, length), true) ?? Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  unmapBufferAsync(domain: Domain, dmaAddress: number, length: number): Promise<void> {
    try {
      const { start, size } = this.bufferPages(dmaAddress, length);
      return this.retire(domain, start, size, () => domain.iovas.release(start, size), true) ?? Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private bufferPages(dmaAddress: number, length: number): { start: number; size: number } {
    if (!Number.isSafeInteger(dmaAddress) || dmaAddress < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new VtdDriverError("bad-argument", `unmapBuffer: address ${String(dmaAddress)} and length ${String(length)} must be whole, length above 0`);
    }
    const start = dmaAddress - (dmaAddress % PAGE);
    return { start, size: Math.ceil((dmaAddress + length) / PAGE) * PAGE - start };
  }

  private retire(domain: Domain, iova: number, length: number, release: () => void, async: boolean): Promise<void> | undefined {
    this.requireInitialised();
    this.requireDomain(domain);
    for (const [name, value] of [["iova", iova], ["length", length]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw new VtdDriverError("bad-argument", `${name} ${String(value)}: expected a whole number of bytes`);
      if (value % PAGE !== 0) throw new VtdDriverError("unaligned", `${name} ${hex(value)} is not 4 KiB aligned`);
    }
    if (length === 0 || iova + length > 2 ** domain.widthBits) throw new VtdDriverError("bad-argument", `unmap ${hex(iova)}+${hex(length)}: empty or beyond the domain`);
    const hole = domain.tables.firstUnmapped(iova, iova + length);
    if (hole >= 0) throw new VtdDriverError("not-mapped", `unmap ${hex(iova)}+${hex(length)} in domain ${domain.did}: ${hex(hole)} is not mapped`);

    const atomic = this.keeps("atomic-superpage-split");
    const result = domain.tables.unmap(iova, iova + length, atomic, (base, size) => {
      // Test-only naive split: the superpage is gone, and the unit is told so, before its table is in.
      this.invalidator.run(this.rangeRequests(domain, base, size, false, true));
    });
    this.counters.unmapCalls++;
    this.counters.superpageSplits += result.splits;
    const leafOnly = !result.nonLeafChanged;
    if (!this.keeps("unmap-invalidation")) {
      release();
      return undefined;
    }
    if (this.deferred.active) {
      this.deferred.addRange(domain, iova, length, leafOnly, true);
      this.deferred.addRelease(domain.did, iova, length, release);
      return undefined;
    }
    if (this.flushQueue && !async) {
      const reuseNow = !this.keeps("deferred-iova-reuse");
      this.flushQueue.add({ did: domain.did, iova, length, leafOnly, release: reuseNow ? () => {} : release });
      if (reuseNow) release();
      return undefined;
    }
    const requests = this.rangeRequests(domain, iova, length, leafOnly, true);
    if (async) return this.invalidator.runAsync(requests).then(release);
    this.invalidator.run(requests);
    release();
    return undefined;
  }

  /** An IOVA about to be mapped again whose unmap is not invalidated yet (flush queue, deferred scope): flush first. */
  private settlePendingUnmaps(domain: Domain, iova: number, length: number): void {
    if (this.deferred.active && this.deferred.freedInScope(domain.did, iova, length)) {
      this.runDeferred(false);
    }
    if (this.flushQueue?.overlaps(domain.did, iova, length)) {
      this.flushQueue.flush();
      if (this.flushQueue.overlaps(domain.did, iova, length)) {
        throw new VtdDriverError("overlap", `map ${hex(iova)}+${hex(length)}: an earlier unmap of it is still being invalidated asynchronously`);
      }
    }
  }

  // ---- invalidation plumbing ----

  /** One IOTLB invalidation for the range, and (for unmaps) one device-TLB invalidation per ATS endpoint. */
  private rangeRequests(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): InvalidationRequest[] {
    const requests = [iotlbRange(this.caps, this.counters, domain.did, start, length, leafOnly)];
    if (deviceTlb) for (const sid of domain.deviceTlbDevices) requests.push(deviceTlbRange(sid, start, length));
    return requests;
  }

  private invalidateRange(domain: Domain, start: number, length: number, leafOnly: boolean, deviceTlb: boolean): void {
    if (this.deferred.active) this.deferred.addRange(domain, start, length, leafOnly, deviceTlb);
    else this.invalidator.run(this.rangeRequests(domain, start, length, leafOnly, deviceTlb));
  }

  private invalidate(requests: InvalidationRequest[]): void {
    if (this.deferred.active) this.deferred.addRequests(requests);
    else this.invalidator.run(requests);
  }

  private writeBufferFlush(): void {
    if (!this.caps.rwbf || !this.keeps("write-buffer-flush")) return;
    if (this.deferred.active) this.deferred.writeBufferFlush = true;
    else this.gcmd.flushWriteBuffer();
  }

  private flushRequests(entries: readonly FlushQueueEntry[], granularity: "domain" | "page"): InvalidationRequest[] {
    const requests: InvalidationRequest[] = [];
    if (granularity === "domain") {
      for (const did of new Set(entries.map((e) => e.did))) {
        requests.push({ kind: "iotlb-domain", did });
        const domain = this.domains.get(did);
        if (domain) for (const sid of domain.deviceTlbDevices) requests.push(deviceTlbEverything(sid));
      }
    } else {
      for (const e of entries) {
        const domain = this.domains.get(e.did);
        if (domain) requests.push(...this.rangeRequests(domain, e.iova, e.length, e.leafOnly, true));
        else requests.push(iotlbRange(this.caps, this.counters, e.did, e.iova, e.length, e.leafOnly));
      }
    }
    this.counters.flushQueueFlushes++;
    return requests;
  }

  /**
   * A deferred-flush scope: every invalidation the operations in `work` need is collected
   * (touching ranges merged) and carried out once, in one submission, when it returns; IOVAs
   * they free are reused only after that. Until then the unit may use stale translations.
   */
  deferFlush<T>(work: () => T): T {
    this.deferred.enter();
    try {
      return work();
    } finally {
      // Even when `work` threw: what it changed must still be invalidated.
      if (this.deferred.leave()) this.runDeferred(false);
    }
  }

  /** As deferFlush, waiting for the final invalidation by interrupt. */
  async deferFlushAsync<T>(work: () => T): Promise<T> {
    this.deferred.enter();
    let result: T;
    try {
      result = work();
    } finally {
      if (this.deferred.leave()) await this.runDeferred(true);
    }
    return result;
  }

  private runDeferred(async: boolean): Promise<void> | undefined {
    const { requests, writeBufferFlush, release } = this.deferred.take((domain, start, length, leafOnly, deviceTlb) =>
      this.rangeRequests(domain, start, length, leafOnly, deviceTlb));
    if (writeBufferFlush) this.gcmd.flushWriteBuffer();
    if (requests.length === 0) {
      release();
      return async ? Promise.resolve() : undefined;
    }
    if (async) return this.invalidator.runAsync(requests).then(release);
    this.invalidator.run(requests);
    release();
    return undefined;
  }

  /** Lazy mode: invalidates everything in the flush queue now (polling) and frees the IOVAs. */
  flush(): void {
    this.flushQueue?.flush();
  }

  flushAsync(): Promise<void> {
    return this.flushQueue?.flushAsync() ?? Promise.resolve();
  }

  get pendingUnmaps(): number {
    return this.flushQueue?.length ?? 0;
  }

  /** Runs a batch of invalidations directly (tests and tools). */
  runInvalidations(requests: InvalidationRequest[]): void {
    this.requireInitialised();
    this.invalidator.run(requests);
  }

  runInvalidationsAsync(requests: InvalidationRequest[]): Promise<void> {
    this.requireInitialised();
    return this.invalidator.runAsync(requests);
  }

  // ---- faults ----

  /** Reads, reports and clears pending fault records (also done on every fault interrupt). */
  handleFaults(): FaultRecord[] {
    const found = this.faults.handle();
    this.queue?.service();
    return found;
  }

  private onFaultInterrupt(): void {
    this.handleFaults();
  }
}

function positive(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) throw new VtdDriverError("bad-argument", `${name} ${String(value)}: expected a positive number`);
  return value;
}
