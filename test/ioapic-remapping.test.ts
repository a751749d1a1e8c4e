/**
 * The I/O APIC's lines through the unit on a real v86 (src/v86/ioapic-remapping.ts), for what the
 * C guest (firmware/interrupt-remapping.c, edge-triggered RTC) does not reach: level-triggered
 * lines with Remote IRR and EOI, masking, a blocked request, compatibility format with remapping
 * on. The idle guest runs with interrupts on and EOIs every vector; redirection entries are put
 * where v86's I/O APIC keeps them (the guest would write them through IOREGSEL/IOWIN), and the
 * unit is set up host-side as Linux would (QI, IRTA, SIRTP, global IEC invalidation, IRE).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FaultReason, FRCD_OFFSET, FrcdHi, Gcmd, getField, Gsts, Reg } from "../src/spec/index.ts";
import { IOAPIC_SOURCE_ID } from "../src/spec/platform.ts";
import { IdleGuest, idleGuestImage } from "../src/v86/idle-guest.ts";
import { Machine } from "../src/v86/machine.ts";
import { installPlatform, type Platform } from "../src/v86/platform.ts";
import { patchedV86Module } from "../src/v86/v86-wasm.node.ts";
import { command, iec, irte } from "./support/interrupt-remapping.ts";
import { Queue } from "./support/queue.ts";
import type { Machine as TableMachine } from "./support/tables.ts";

const TABLE = 0x30_0000;
const PIN = 20; // no v86 device drives it
const LEVEL = 1 << 15;
const MASKED = 1 << 16;
const REMOTE_IRR = 1 << 14;
const REMAPPABLE = 1 << 16;

let machine: Machine;
let platform: Platform;
let idle: IdleGuest;
let entries: Int32Array;
let queue: Queue;

/** A table store as the guest's driver makes it: written, then its line flushed (the unit models ECAP.C = 0). */
function write64(address: number, value: bigint): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  machine.memory.write(BigInt(address), bytes);
  platform.device.cacheLineFlushed(address);
}

function setIrte(index: number, entry: [bigint, bigint]): void {
  write64(TABLE + index * 16 + 8, entry[1]);
  write64(TABLE + index * 16, entry[0]);
  queue.submit(iec.index(index));
}

/** Redirection entry `PIN`: remappable format, interrupt `index`, the entry's own vector for EOIs. */
function route(index: number, vector: number, flags: number): void {
  entries[24 + PIN] = ((index & 0x7fff) << 17) | REMAPPABLE;
  entries[PIN] = vector | ((index >> 15) << 11) | flags;
}

/** Lets v86 run until `condition` holds (at most ~2 s of safe points). */
async function until(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  return condition();
}

const taken = () => idle.interruptsTaken;

describe("the I/O APIC's lines through the unit on v86", () => {
  beforeAll(async () => {
    machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: idleGuestImage() });
    platform = installPlatform(machine, { vtd: { interruptRemapping: true }, multibootInfoAddress: machine.cpu.reg32[3]! >>> 0 });
    entries = new Int32Array(machine.cpu.wasm_memory.buffer, machine.cpu.get_ioapic_addr(), 48);
    idle = IdleGuest.start(machine);
    const adapter = { device: platform.device, ram: { write64 } } as unknown as TableMachine;
    queue = new Queue(adapter, 0x40_0000).enable();
    machine.memory.write(BigInt(TABLE), new Uint8Array(4096));
    platform.device.writeRegister(Reg.IRTA, 8, BigInt(TABLE) | 7n);
    command(adapter, Gcmd.SIRTP);
    queue.submit(iec.global());
    command(adapter, Gcmd.IRE);
    expect(platform.device.readRegister(Reg.GSTS, 4) & Gsts.IRES).toBe(Gsts.IRES);
  }, 60_000);

  afterAll(async () => {
    await idle?.exit(0);
  });

  it("a level line sends once while Remote IRR is set, again after the EOI while still high, never after it went low", async () => {
    setIrte(3, irte({ vector: 0x71, tm: 1, svt: 1, sid: IOAPIC_SOURCE_ID }));
    route(3, 0x71, LEVEL);
    const before = { taken: taken(), sent: platform.ioApic.counts.remappable };
    machine.cpu.device_raise_irq(PIN);
    // Each delivery is EOIed by the guest, which clears Remote IRR (the entry's vector matches): the line, still high, sends again.
    expect(await until(() => taken() >= before.taken + 3)).toBe(true);
    machine.cpu.device_lower_irq(PIN);
    await new Promise((r) => setTimeout(r, 50));
    const sent = platform.ioApic.counts.remappable - before.sent;
    await new Promise((r) => setTimeout(r, 100));
    expect(platform.ioApic.counts.remappable - before.sent).toBe(sent);
    expect(platform.device.stats.interruptsRemapped).toBeGreaterThanOrEqual(3);
    expect(entries[PIN]! & REMOTE_IRR).toBe(0);
  }, 30_000);

  it("a masked level line waits, and sends when unmasked", async () => {
    route(3, 0x71, LEVEL | MASKED);
    const before = taken();
    machine.cpu.device_raise_irq(PIN);
    await new Promise((r) => setTimeout(r, 100));
    expect(taken()).toBe(before);
    entries[PIN] = entries[PIN]! & ~MASKED;
    expect(await until(() => taken() > before)).toBe(true);
    machine.cpu.device_lower_irq(PIN);
  }, 30_000);

  it("an edge line sends once per rising edge, not again while it stays high", async () => {
    setIrte(4, irte({ vector: 0x72, svt: 1, sid: IOAPIC_SOURCE_ID }));
    route(4, 0x72, 0);
    const before = platform.ioApic.counts.remappable;
    machine.cpu.device_raise_irq(PIN);
    machine.cpu.device_raise_irq(PIN);
    await until(() => platform.ioApic.counts.remappable > before);
    await new Promise((r) => setTimeout(r, 50));
    expect(platform.ioApic.counts.remappable - before).toBe(1);
    machine.cpu.device_lower_irq(PIN);
    machine.cpu.device_raise_irq(PIN);
    expect(await until(() => platform.ioApic.counts.remappable - before === 2)).toBe(true);
    machine.cpu.device_lower_irq(PIN);
  }, 30_000);

  it("a blocked level request records one fault and sets Remote IRR: no storm while the line stays high", async () => {
    setIrte(5, irte({ present: false, vector: 0x73, tm: 1 }));
    route(5, 0x73, LEVEL);
    const before = { recorded: platform.device.stats.faultsRecorded, blocked: platform.ioApic.counts.blocked };
    machine.cpu.device_raise_irq(PIN);
    expect(await until(() => platform.ioApic.counts.blocked > before.blocked)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(platform.ioApic.counts.blocked - before.blocked).toBe(1);
    expect(platform.device.stats.faultsRecorded - before.recorded).toBe(1);
    expect(entries[PIN]! & REMOTE_IRR).toBe(REMOTE_IRR);
    const frcd = platform.device.readRegister(FRCD_OFFSET + 8, 8);
    expect(getField(frcd, FrcdHi.FR)).toBe(BigInt(FaultReason.IrteNotPresent));
    expect(getField(frcd, FrcdHi.SID)).toBe(BigInt(IOAPIC_SOURCE_ID));
    machine.cpu.device_lower_irq(PIN);
  }, 30_000);

  it("a compatibility-format entry is checked too: blocked (25h) while remapping is on and CFIS = 0, v86's own path once CFIS = 1", async () => {
    platform.device.writeRegister(Reg.FSTS, 4, 0xffn); // clear what the last test recorded (PPF follows the F bits)
    platform.device.writeRegister(FRCD_OFFSET + 12, 4, 1n << 31n);
    entries[24 + PIN] = 0; // destination 0, compatibility format
    entries[PIN] = 0x74; // edge, fixed, unmasked
    const before = { taken: taken(), recorded: platform.device.stats.faultsRecorded, reads: platform.device.stats.registerReads };
    machine.cpu.device_raise_irq(PIN);
    machine.cpu.device_lower_irq(PIN);
    expect(platform.device.stats.registerReads).toBe(before.reads); // the host's look at IRES is no guest register read
    await new Promise((r) => setTimeout(r, 100));
    expect(taken()).toBe(before.taken);
    expect(platform.device.stats.faultsRecorded - before.recorded).toBe(1);
    expect(getField(platform.device.readRegister(FRCD_OFFSET + 8, 8), FrcdHi.FR)).toBe(BigInt(FaultReason.CompatibilityInterruptBlocked));
    command({ device: platform.device } as unknown as TableMachine, Gcmd.CFI);
    machine.cpu.device_raise_irq(PIN);
    machine.cpu.device_lower_irq(PIN);
    expect(await until(() => taken() > before.taken)).toBe(true);
  }, 30_000);

  it("the lines' state survives a snapshot (a level line still high sends again after restore), and a bad one is refused", async () => {
    setIrte(6, irte({ vector: 0x75, tm: 1, svt: 1, sid: IOAPIC_SOURCE_ID }));
    route(6, 0x75, LEVEL | MASKED);
    machine.cpu.device_raise_irq(PIN);
    const saved = platform.ioApic.saveState();
    expect(saved).toEqual({ high: 1 << PIN, levels: 1 << PIN });
    platform.ioApic.restoreState({ high: 0, levels: 0 }); // as a fresh machine would start
    platform.ioApic.restoreState(saved);
    const before = taken();
    entries[PIN] = entries[PIN]! & ~MASKED;
    expect(await until(() => taken() > before)).toBe(true);
    machine.cpu.device_lower_irq(PIN);
    for (const bad of [null, { high: 1 }, { high: 2 ** 24, levels: 0 }, { high: 0, levels: 1 }, { high: -1, levels: 0 }]) {
      expect(() => platform.ioApic.restoreState(bad as never)).toThrow(/I\/O APIC lines/);
    }
  }, 30_000);
});
