/**
 * The I/O APIC's interrupts through the unit (VT-d §5.1.5.1). v86's I/O APIC lives in its wasm
 * and routes straight to the local APIC; a redirection entry in remappable format (bit 48 set:
 * the interrupt index in bits 63:49 and 11, no destination) must instead become an interrupt
 * request that the unit remaps through its IRTE. v86 0.5.462 keeps the whole upper dword of an
 * entry only with `patchV86Wasm` (wasm-patch.ts).
 *
 * So the lines v86's devices drive (`cpu.device_raise_irq` / `device_lower_irq`) are watched here:
 * - a line whose entry is in compatibility format is shown to the unit as the MSI the I/O APIC
 *   would send (blocked when interrupt remapping is on and CFIS is clear, §5.1.4); if it passes,
 *   v86's own I/O APIC delivers it as before;
 * - a line whose entry is in remappable format sends a remappable request (SHV = 0) with the I/O
 *   APIC's source-id: edge-triggered at each rising edge while unmasked; level-triggered while
 *   asserted, unmasked and Remote IRR clear, setting Remote IRR (cleared by v86 at the EOI of the
 *   entry's vector, which Linux sets to the IRTE's vector for this reason). A blocked request sets
 *   Remote IRR too: the I/O APIC cannot know the unit blocked it, so it does not resend.
 * Requests go out at a safe point (raising an interrupt inside a port handler is not safe on v86).
 */
import { isObject, isUint } from "../devices/state-checks.ts";
import { IOAPIC_SOURCE_ID, MSI_ADDRESS_BASE } from "../spec/platform.ts";
import type { VtdDevice } from "../vtd-device/index.ts";
import type { V86Cpu } from "./internals.ts";
import type { SafePoints } from "./safe-point.ts";

export const IOAPIC_PINS = 24;
/** v86's I/O APIC struct: low dwords of the 24 entries, then their high dwords. */
const HIGH_DWORDS = IOAPIC_PINS;
const ENTRY_DWORDS = 2 * IOAPIC_PINS;

/** Redirection entry, low dword (82093AA §3.2.4). */
const VECTOR = 0xff;
const DESTINATION_MODE_SHIFT = 11; // remappable format: interrupt index bit 15
const REMOTE_IRR = 1 << 14;
const LEVEL = 1 << 15;
const MASKED = 1 << 16;
/** High dword: interrupt format (bit 48) and interrupt index 14:0 (bits 63:49); compatibility: destination (63:56). */
const REMAPPABLE = 1 << 16;
const INDEX_LOW_SHIFT = 17;
const DESTINATION_SHIFT = 24;

/** MSI address bits of an interrupt request (§5.1.5.2): handle 14:0 at 19:5, format at 4, handle 15 at 2. */
const HANDLE_LOW_SHIFT = 5;
const FORMAT_REMAPPABLE = 1 << 4;
const HANDLE_HIGH_SHIFT = 2;
const COMPAT_DESTINATION_SHIFT = 12;
const COMPAT_DESTINATION_MODE_SHIFT = 2;
const DELIVERY_MODE = 0x700;

/** The lines' state a snapshot keeps (bit n: line n). */
export interface IoApicLines {
  high: number;
  levels: number;
}

/** Why `lines` are no saved I/O APIC lines, or undefined. */
export function checkIoApicLines(lines: unknown): string | undefined {
  const mask = 2 ** IOAPIC_PINS - 1;
  if (!isObject(lines) || !isUint(lines.high, mask) || !isUint(lines.levels, mask) || (lines.levels & ~lines.high) !== 0) {
    return "I/O APIC lines: expected { high, levels } as 24-bit masks, levels within high";
  }
  return undefined;
}

export class IoApicRemapping {
  /** Lines of remappable entries that went high and are waiting for the next safe point. */
  private edges = 0;
  /** Lines of remappable entries that are high (a raise while high is no new edge). */
  private high = 0;
  /** Lines of remappable level-triggered entries that are high. */
  private levels = 0;
  private scheduled = false;
  private entries: Int32Array;
  private readonly raise: (irq: number) => void;
  private readonly lower: (irq: number) => void;
  private readonly flushAtSafePoint = () => this.flush();
  /** Requests sent for remappable entries, and those the unit blocked. */
  readonly counts = { remappable: 0, blocked: 0 };

  constructor(
    private readonly cpu: V86Cpu,
    private readonly safePoints: SafePoints,
    private readonly unit: VtdDevice,
    /** Delivers a compatibility-format MSI to the local APIC (at a safe point). */
    private readonly deliver: (address: number, data: number) => void,
  ) {
    this.entries = this.view();
    this.raise = cpu.device_raise_irq.bind(cpu);
    this.lower = cpu.device_lower_irq.bind(cpu);
    cpu.device_raise_irq = (irq) => this.lineRaised(irq);
    cpu.device_lower_irq = (irq) => this.lineLowered(irq);
    // An EOI (Remote IRR cleared by v86) or an unmask lets a level line that is still high send again.
    safePoints.onTick(() => {
      if (this.levels !== 0) this.flush();
    });
  }

  /**
   * What v86's own state does not hold: which remappable lines are high (level ones among them).
   * Pending edges are deferred work: a machine saves only when none waits (attach-state.ts).
   */
  saveState(): IoApicLines {
    return { high: this.high >>> 0, levels: this.levels >>> 0 };
  }

  /** Takes `saveState`'s lines (checkIoApicLines: anything else is refused with the reason). */
  restoreState(lines: IoApicLines): void {
    const why = checkIoApicLines(lines);
    if (why) throw new RangeError(why);
    this.high = lines.high;
    this.levels = lines.levels;
    this.edges = 0;
  }

  /** Puts v86's own line functions back. */
  detach(): void {
    this.cpu.device_raise_irq = this.raise;
    this.cpu.device_lower_irq = this.lower;
    this.edges = this.levels = this.high = 0;
  }

  private view(): Int32Array {
    return new Int32Array(this.cpu.wasm_memory.buffer, this.cpu.get_ioapic_addr(), ENTRY_DWORDS);
  }

  /** The entries over the current wasm memory (re-made only when the memory grew). */
  private table(): Int32Array {
    if (this.entries.buffer !== this.cpu.wasm_memory.buffer) this.entries = this.view();
    return this.entries;
  }

  private lineRaised(irq: number): void {
    if (!(irq >= 0 && irq < IOAPIC_PINS)) return this.raise(irq);
    const table = this.table();
    const low = table[irq]!;
    const high = table[HIGH_DWORDS + irq]!;
    if ((high & REMAPPABLE) === 0) {
      // Compatibility format: with remapping on, what the I/O APIC would send is checked by the unit
      // (blocked unless CFIS); what passes takes v86's own path, as everything does with remapping off.
      if ((low & MASKED) === 0 && this.unit.interruptRemappingEnabled) {
        const address = MSI_ADDRESS_BASE | ((high >>> DESTINATION_SHIFT) << COMPAT_DESTINATION_SHIFT) |
          (((low >>> DESTINATION_MODE_SHIFT) & 1) << COMPAT_DESTINATION_MODE_SHIFT);
        if (!this.unit.remapInterrupt(IOAPIC_SOURCE_ID, address >>> 0, low & (VECTOR | LEVEL | DELIVERY_MODE))) return;
      }
      return this.raise(irq);
    }
    const bit = 1 << irq;
    if ((this.high & bit) !== 0) return;
    this.high |= bit;
    if ((low & LEVEL) !== 0) this.levels |= bit;
    else this.edges |= bit;
    if (!this.scheduled) {
      this.scheduled = true;
      this.safePoints.defer(this.flushAtSafePoint);
    }
  }

  private lineLowered(irq: number): void {
    if (irq >= 0 && irq < IOAPIC_PINS) {
      this.high &= ~(1 << irq);
      this.levels &= ~(1 << irq);
    }
    this.lower(irq);
  }

  private flush(): void {
    this.scheduled = false;
    const table = this.table();
    let pending = this.edges | this.levels;
    this.edges = 0;
    while (pending !== 0) {
      const irq = 31 - Math.clz32(pending);
      pending &= ~(1 << irq);
      this.send(table, irq);
    }
  }

  /** One request for line `irq` if its entry lets it go now. */
  private send(table: Int32Array, irq: number): void {
    const low = table[irq]!;
    const high = table[HIGH_DWORDS + irq]!;
    const level = (low & LEVEL) !== 0;
    // Masked: an edge is lost (as v86's I/O APIC loses it); a high level line waits for the unmask.
    if ((high & REMAPPABLE) === 0 || (low & MASKED) !== 0) return;
    if (level) {
      if ((low & REMOTE_IRR) !== 0) return;
      table[irq] = low | REMOTE_IRR;
    }
    const index = ((high >>> INDEX_LOW_SHIFT) & 0x7fff) | (((low >>> DESTINATION_MODE_SHIFT) & 1) << 15);
    const address = MSI_ADDRESS_BASE | ((index & 0x7fff) << HANDLE_LOW_SHIFT) | FORMAT_REMAPPABLE | ((index >>> 15) << HANDLE_HIGH_SHIFT);
    this.counts.remappable++;
    if (this.unit.remapInterrupt(IOAPIC_SOURCE_ID, address >>> 0, low & (VECTOR | LEVEL))) {
      this.deliver(this.unit.interrupt.address, this.unit.interrupt.data);
    } else {
      this.counts.blocked++;
    }
  }
}
