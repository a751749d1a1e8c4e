/**
 * Interrupt remapping, the driver's side (VT-d ch. 5, §9.10, §11.4.4), in the order of Linux 6.1's
 * drivers/iommu/intel/irq_remapping.c: queued invalidation is already on (the interrupt entry
 * cache can only be invalidated through the queue); the table is allocated and zeroed; IRTA is
 * written and latched with GCMD.SIRTP; the interrupt entry cache is invalidated globally (unless
 * CAP.ESIRTPS); IRE; then the compatibility-format policy (CFI): blocked unless asked for. All of
 * this happens before DMA remapping is enabled.
 *
 * Devices get IRTEs by `allocate`: the entry is written high qword first, then the low qword with
 * P (one 64-bit store, so the unit never sees a present entry with the old source-id), flushed
 * from the CPU cache (ECAP.C = 0), and its index invalidated in the entry cache. Linux invalidates
 * after every IRTE change, making an entry present included; under CAP.CM = 1 that invalidation is
 * required (a not-present IRTE may be cached), under CM = 0 it costs one descriptor. The device's
 * MSI is then in remappable format: address 0xFEE00000 | handle[14:0] << 5 | 1 << 4 (format) |
 * SHV << 3 | handle[15] << 2, data = subhandle (0), as Linux composes it.
 */
import { IrteHi, IrteLo, IRTE_SIZE, RemappableAddress, SourceValidationType } from "../spec/interrupts.ts";
import { setField } from "../spec/field.ts";
import { MSI_ADDRESS_BASE } from "../spec/platform.ts";
import { Gcmd, Gsts, Reg } from "../spec/registers.ts";
import type { UnitCapabilities } from "./discovery.ts";
import { bdf, VtdDriverError } from "./errors.ts";
import type { GlobalCommand } from "./global-command.ts";
import type { InvalidationRequest } from "./invalidation.ts";
import type { DriverOptions } from "./options.ts";
import type { PageAllocator } from "./platform.ts";
import type { TableMemory } from "./table-memory.ts";
import type { UnitRegisters } from "./unit-registers.ts";

const b = (n: number) => BigInt(n);

/** What a device's interrupt is delivered as. */
export interface InterruptTarget {
  vector: number;
  /** xAPIC id of the destination (physical mode). Default 0. */
  apicId?: number;
  /** Level-triggered (TM = 1). Default edge. */
  level?: boolean;
}

/** An allocated interrupt: its table index and the remappable-format MSI the device sends. */
export interface RemappedInterrupt {
  readonly sid: number;
  readonly index: number;
  /** The MSI address (32 bits) and data the device is programmed with. */
  readonly address: number;
  readonly data: number;
}

export interface InterruptRemappingSettings {
  /** The table holds 2^(sizeOrder + 1) entries, 0..15. Default 7: 256 entries, one page (Linux takes 15: 65,536 entries, 1 MiB). */
  sizeOrder: number;
  /** Compatibility-format interrupts pass (GCMD.CFI = 1). Default false: blocked, as Linux wants. */
  compatibilityFormat: boolean;
  /** False: the IEC invalidation after an IRTE change is left out (test-only, the driver-bugs catalogue). */
  invalidateEntries: boolean;
}

/** The driver option `interruptRemapping` (true or its settings object) and the test-only rule, resolved. */
export function interruptSettings(option: DriverOptions["interruptRemapping"], invalidateEntries: boolean): InterruptRemappingSettings {
  const o = typeof option === "object" && option !== null ? option : {};
  return { sizeOrder: o.sizeOrder ?? 7, compatibilityFormat: o.compatibilityFormat === true, invalidateEntries };
}

export class InterruptRemappingTable {
  readonly table: number;
  readonly entries: number;
  private readonly pages: number;
  private readonly used = new Map<number, RemappedInterrupt>();
  private next = 0;

  constructor(
    private readonly regs: UnitRegisters,
    private readonly caps: UnitCapabilities,
    private readonly gcmd: GlobalCommand,
    private readonly tables: TableMemory,
    allocator: PageAllocator,
    private readonly run: (requests: InvalidationRequest[]) => void,
    private readonly settings: InterruptRemappingSettings,
  ) {
    const s = settings.sizeOrder;
    if (!Number.isInteger(s) || s < 0 || s > 15) throw new VtdDriverError("bad-argument", `interrupt table sizeOrder ${String(s)}: expected 0..15`);
    this.entries = 2 ** (s + 1);
    this.pages = Math.max(1, (this.entries * IRTE_SIZE) / 4096);
    this.table = allocator.allocatePages(this.pages);
    // Zeroed by the CPU: flushed so the unit reads not-present entries (ECAP.C = 0).
    tables.flush(this.table, this.pages * 4096);
  }

  /** IRTA, SIRTP, the global IEC invalidation (without ESIRTPS), IRE, the CFI policy. */
  enable(): void {
    // EIME stays 0: xAPIC mode (the unit offers no EIM).
    this.regs.write64(Reg.IRTA, b(this.table) | b(this.settings.sizeOrder));
    this.gcmd.oneShot(Gcmd.SIRTP, Gsts.IRTPS, 1, "SIRTP");
    if (!this.caps.esirtps) this.run([{ kind: "iec-global" }]);
    this.gcmd.setPersistent(Gcmd.IRE, Gsts.IRES, true, "IRE");
    const passes = (this.gcmd.status() & Number(Gsts.CFIS)) !== 0;
    if (passes !== this.settings.compatibilityFormat) this.gcmd.setPersistent(Gcmd.CFI, Gsts.CFIS, this.settings.compatibilityFormat, "CFI");
  }

  /** IRE off (the table stays latched). */
  disable(): void {
    this.gcmd.setPersistent(Gcmd.IRE, Gsts.IRES, false, "IRE");
  }

  /** A free IRTE for `sid`'s interrupt, made present and invalidated; the MSI the device sends. */
  allocate(sid: number, target: InterruptTarget): RemappedInterrupt {
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new VtdDriverError("bad-argument", `source-id ${String(sid)}: expected 0..0xffff`);
    const lo = this.lowQword(target);
    if (this.used.size >= this.entries) throw new VtdDriverError("out-of-space", `all ${this.entries} interrupt remapping table entries are in use`);
    let index = this.next;
    while (this.used.has(index)) index = (index + 1) % this.entries;
    this.next = (index + 1) % this.entries;
    // Requester id verified in full (SVT 01, SQ 00), as Linux's set_msi_sid.
    const hi = setField(setField(0n, IrteHi.SVT, SourceValidationType.RequesterId), IrteHi.SID, sid);
    const at = this.entryAddress(index);
    this.tables.write64(at + 8, hi);
    this.tables.write64(at, lo);
    this.tables.flush(at, IRTE_SIZE);
    this.invalidate(index);
    const handle = index;
    const address = (MSI_ADDRESS_BASE | ((handle & 0x7fff) << RemappableAddress.HANDLE.shift) | (1 << RemappableAddress.INTERRUPT_FORMAT.shift) |
      (1 << RemappableAddress.SHV.shift) | (((handle >> 15) & 1) << RemappableAddress.HANDLE_15.shift)) >>> 0;
    const interrupt: RemappedInterrupt = { sid, index, address, data: 0 };
    this.used.set(index, interrupt);
    return interrupt;
  }

  /** New vector or destination for an allocated interrupt: the low qword in one store, then the IEC invalidation. */
  retarget(interrupt: RemappedInterrupt, target: InterruptTarget): void {
    this.require(interrupt);
    const at = this.entryAddress(interrupt.index);
    this.tables.write64(at, this.lowQword(target));
    this.tables.flush(at, IRTE_SIZE);
    this.invalidate(interrupt.index);
  }

  /** Clears the IRTE (P first) and invalidates it. */
  free(interrupt: RemappedInterrupt): void {
    this.require(interrupt);
    const at = this.entryAddress(interrupt.index);
    this.tables.write64(at, 0n);
    this.tables.write64(at + 8, 0n);
    this.tables.flush(at, IRTE_SIZE);
    this.invalidate(interrupt.index);
    this.used.delete(interrupt.index);
  }

  get allocated(): number {
    return this.used.size;
  }

  entryAddress(index: number): number {
    return this.table + index * IRTE_SIZE;
  }

  private invalidate(index: number): void {
    if (this.settings.invalidateEntries) this.run([{ kind: "iec-index", index, im: 0 }]);
  }

  private require(interrupt: RemappedInterrupt): void {
    if (!interrupt || this.used.get(interrupt.index) !== interrupt) {
      throw new VtdDriverError("bad-argument", `interrupt ${interrupt ? `index ${interrupt.index} of ${bdf(interrupt.sid)}` : String(interrupt)} is not allocated by this driver`);
    }
  }

  private lowQword(target: InterruptTarget): bigint {
    const { vector, apicId = 0, level = false } = target ?? ({} as InterruptTarget);
    if (!Number.isInteger(vector) || vector < 0x10 || vector > 0xff) throw new VtdDriverError("bad-argument", `vector ${String(vector)}: expected 0x10..0xff`);
    if (!Number.isInteger(apicId) || apicId < 0 || apicId > 0xff) throw new VtdDriverError("bad-argument", `APIC id ${String(apicId)}: expected 0..0xff`);
    // P, physical destination mode, fixed delivery, the vector, DST[15:8] = the xAPIC id (VT-d §9.10).
    let lo = setField(0n, IrteLo.P, 1);
    lo = setField(lo, IrteLo.TM, level ? 1 : 0);
    lo = setField(lo, IrteLo.V, vector);
    return setField(lo, IrteLo.DST, apicId << 8);
  }
}
