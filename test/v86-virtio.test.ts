/**
 * The virtio-blk function on v86's PCI bus, attached through installPlatform's attachDevices:
 * config space through v86's ports 0xCF8/0xCFC, BAR sizing and moving as a BIOS or Linux does it,
 * MMIO blocks shared with other handlers, a request served at a safe point with INTx through the
 * PIIX routing; and, when Debian's SeaBIOS is installed, SeaBIOS assigning the BAR and driving the
 * device with its own virtio driver.
 */
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PciReg, PciStatus } from "../src/devices/pci-config.ts";
import { VirtioBlkDevice, virtioBlkPciIdentity } from "../src/devices/virtio/virtio-blk.ts";
import type { V86Cpu } from "../src/v86/internals.ts";
import { Machine } from "../src/v86/machine.ts";
import { installPlatform, VIRTIO_BLK_PCI_SLOT, type Platform } from "../src/v86/platform.ts";
import { VTD_UNIT_BASE } from "../src/v86/unit-mmio.ts";
import { patchedV86Module } from "../src/v86/v86-wasm.node.ts";
import { flatMultibootImage, X86 } from "./support/multiboot-images.ts";

const SLOT = VIRTIO_BLK_PCI_SLOT;
const BAR0 = 0xfe80_0000;
const COMMAND_MEMORY = 0x2;
const COMMAND_BUS_MASTER = 0x4;

/** What v86's CPU calls for an MMIO access (prototype methods of its CPU, not in our typings). */
interface MmioCpu {
  mmap_read8(addr: number): number;
  mmap_read32(addr: number): number;
  mmap_write8(addr: number, value: number): void;
  mmap_write16(addr: number, value: number): void;
  mmap_write32(addr: number, value: number): void;
  memory_map_read8: unknown[];
}

/** Config mechanism #1 through v86's own port handlers. */
function configPorts(cpu: V86Cpu) {
  const port = (n: number) => cpu.io.ports[n]!;
  const select = (dev: number, reg: number) => port(0xcf8).write32.call(port(0xcf8).device, (0x8000_0000 | (dev << 11) | (reg & 0xfc)) | 0);
  return {
    read32(dev: number, reg: number): number {
      select(dev, reg);
      return port(0xcfc).read32.call(port(0xcfc).device, 0xcfc) >>> 0;
    },
    write32(dev: number, reg: number, value: number): void {
      select(dev, reg);
      port(0xcfc).write32.call(port(0xcfc).device, value | 0);
    },
    write16(dev: number, reg: number, value: number): void {
      select(dev, reg);
      const p = port(0xcfc + (reg & 2));
      p.write16.call(p.device, value);
    },
  };
}

function pattern(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 13 + (i >> 9) * 7) & 0xff;
  return bytes;
}

describe("v86: the virtio-blk function on the PCI bus (BIOS-less)", () => {
  let machine: Machine;
  let platform: Platform;
  let blk: VirtioBlkDevice;
  let cpu: V86Cpu & MmioCpu;
  let config: ReturnType<typeof configPorts>;
  const disk = pattern(64 * 512);

  beforeAll(async () => {
    machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: flatMultibootImage(X86.spin) });
    platform = installPlatform(machine, {
      attachDevices: (bus) => {
        blk = bus.attach({ name: "virtio-blk", device: SLOT, identity: virtioBlkPciIdentity(BAR0) }, (port) => new VirtioBlkDevice({ port, disk })).device;
        return [{ bus: 0, dev: SLOT, fn: 0 }];
      },
    });
    cpu = machine.cpu as V86Cpu & MmioCpu;
    config = configPorts(cpu);
  });
  afterAll(() => machine.stop());

  /** A safe point, as v86's main loop reaches one between instructions. */
  const safePoint = () => cpu.run_hardware_timers(1, performance.now());

  it("answers config reads through ports 0xCF8/0xCFC: ids, class, INTA routed to IRQ 10, the capability list", () => {
    expect(config.read32(SLOT, PciReg.VENDOR_ID)).toBe(0x1042_1af4);
    expect(config.read32(SLOT, PciReg.REVISION_ID)).toBe(0x0180_0001);
    expect((config.read32(SLOT, PciReg.COMMAND) >>> 16) & PciStatus.CAPABILITIES_LIST).toBe(PciStatus.CAPABILITIES_LIST);
    expect(config.read32(SLOT, PciReg.INTERRUPT_LINE) & 0xffff).toBe(0x010a); // pin A, line 10
    expect(config.read32(SLOT, PciReg.BAR0)).toBe(BAR0);
    const caps: string[] = [];
    for (let at = config.read32(SLOT, PciReg.CAPABILITIES_POINTER) & 0xfc, n = 0; at !== 0 && n < 48; n++) {
      const head = config.read32(SLOT, at);
      caps.push((head & 0xff) === 0x09 ? `vendor:${(head >>> 24) & 0xff}` : `0x${(head & 0xff).toString(16)}`);
      at = (head >> 8) & 0xfc;
    }
    expect(caps).toEqual(["0x5", "vendor:1", "vendor:3", "vendor:4", "vendor:2"]);
  });

  it("is listed in the DMAR's device scope beside edu", () => {
    const scope = (dev: number) => [0x01, 0x08, 0, 0, 0, 0, dev, 0];
    const has = (bytes: number[]) => platform.dmar.some((_, i) => bytes.every((b, j) => platform.dmar[i + j] === b));
    expect(has(scope(4))).toBe(true);
    expect(has(scope(SLOT))).toBe(true);
  });

  it("decodes BAR0 only while Memory Space is on; sizing reads back 0xffffc000", () => {
    const numQueues = BAR0 + 0x10; // config_msix_vector (0xffff) | num_queues (1) << 16
    expect(cpu.mmap_read32(numQueues) >>> 0).toBe(0xffff_ffff);
    config.write16(SLOT, PciReg.COMMAND, COMMAND_MEMORY);
    expect(cpu.mmap_read32(numQueues) >>> 0).toBe(0x0001_ffff);
    // Linux's sizing: decoding off, all ones, read, restore, decoding on.
    config.write16(SLOT, PciReg.COMMAND, 0);
    config.write32(SLOT, PciReg.BAR0, 0xffff_ffff);
    expect(config.read32(SLOT, PciReg.BAR0)).toBe(0xffff_c000);
    expect(platform.bus.barWindow(SLOT << 3, 0)).toBeUndefined();
    config.write32(SLOT, PciReg.BAR0, BAR0);
    config.write16(SLOT, PciReg.COMMAND, COMMAND_MEMORY);
    expect(platform.bus.barWindow(SLOT << 3, 0)).toBe(BAR0);
    expect(cpu.mmap_read8(numQueues + 2)).toBe(1);
  });

  it("follows BAR0 where the guest moves it, sharing a 128 KiB block with the VT-d unit, and restores the old places", () => {
    const block = (address: number) => cpu.memory_map_read8[address >>> 17];
    const unitBlockHandler = block(VTD_UNIT_BASE);
    const ourDispatcher = block(BAR0); // BAR0 decodes there now
    const shared = 0xfed8_0000; // the unit's page is at 0xFED90000 in the same block
    config.write32(SLOT, PciReg.BAR0, shared);
    expect(platform.bus.barWindow(SLOT << 3, 0)).toBe(shared);
    expect(cpu.mmap_read32(shared + 0x10) >>> 0).toBe(0x0001_ffff);
    expect(cpu.mmap_read32(VTD_UNIT_BASE) >>> 0).toBe(0x10); // VER: the unit still answers its page
    expect(cpu.mmap_read32(shared + 0x4000) >>> 0).toBe(0xffff_ffff); // past the BAR: the unit's block rule
    expect(cpu.mmap_read32(BAR0 + 0x10) >>> 0).toBe(0xffff_ffff); // nothing left at the old place
    expect(block(BAR0)).not.toBe(ourDispatcher); // the block's own handlers are back
    config.write32(SLOT, PciReg.BAR0, BAR0);
    expect(block(VTD_UNIT_BASE)).toBe(unitBlockHandler);
    expect(cpu.mmap_read32(VTD_UNIT_BASE) >>> 0).toBe(0x10);
    expect(cpu.mmap_read32(BAR0 + 0x10) >>> 0).toBe(0x0001_ffff);
  });

  it("leaves BAR0 undecoded where it would cover the VT-d unit, the IO-APIC or the LAPIC (those decode first)", () => {
    for (const over of [VTD_UNIT_BASE, 0xfec0_0000, 0xfee0_0000]) {
      config.write32(SLOT, PciReg.BAR0, over);
      expect(platform.bus.barWindow(SLOT << 3, 0)).toBeUndefined();
      expect(cpu.mmap_read32(BAR0 + 0x10) >>> 0).toBe(0xffff_ffff); // nothing at the old place either
    }
    expect(cpu.mmap_read32(VTD_UNIT_BASE) >>> 0).toBe(0x10); // VER: the unit still answers
    config.write32(SLOT, PciReg.BAR0, BAR0);
    expect(platform.bus.barWindow(SLOT << 3, 0)).toBe(BAR0);
    expect(cpu.mmap_read32(BAR0 + 0x10) >>> 0).toBe(0x0001_ffff);
  });

  it("serves a request: the notify only schedules, DMA and INTx happen at a safe point, the ISR read lowers INTx", () => {
    config.write16(SLOT, PciReg.COMMAND, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    const mem = machine.memory;
    const w32 = (a: number, v: number) => cpu.mmap_write32(BAR0 + a, v);
    const desc = 0x40_0000, avail = 0x40_1000, used = 0x40_2000, header = 0x40_3000, data = 0x40_4000, status = 0x40_5000;
    const ram = new DataView(mem.direct.buffer, mem.direct.byteOffset);
    ram.setUint32(header, 0, true); // IN
    ram.setBigUint64(header + 8, 5n, true); // sector 5
    const chain = [[header, 16, 1], [data, 1024, 3], [status, 1, 2]] as const;
    chain.forEach(([addr, len, flags], i) => {
      ram.setBigUint64(desc + 16 * i, BigInt(addr), true);
      ram.setUint32(desc + 16 * i + 8, len, true);
      ram.setUint16(desc + 16 * i + 12, flags, true);
      ram.setUint16(desc + 16 * i + 14, i + 1, true);
    });
    ram.setUint16(avail + 4, 0, true);
    ram.setUint16(avail + 2, 1, true);
    mem.direct[status] = 0xee;

    cpu.mmap_write8(BAR0 + 0x14, 0); // reset
    cpu.mmap_write8(BAR0 + 0x14, 1 | 2);
    w32(0x08, 1); // driver_feature_select 1: VERSION_1 | ACCESS_PLATFORM
    w32(0x0c, 0x3);
    cpu.mmap_write8(BAR0 + 0x14, 1 | 2 | 8);
    expect(cpu.mmap_read8(BAR0 + 0x14)).toBe(1 | 2 | 8);
    cpu.mmap_write16(BAR0 + 0x18, 8); // queue_size
    for (const [offset, address] of [[0x20, desc], [0x28, avail], [0x30, used]] as const) {
      w32(offset, address);
      w32(offset + 4, 0);
    }
    cpu.mmap_write16(BAR0 + 0x1c, 1); // queue_enable
    cpu.mmap_write8(BAR0 + 0x14, 1 | 2 | 8 | 4);
    cpu.mmap_write16(BAR0 + 0x3000, 0); // notify queue 0

    expect(mem.direct[status]).toBe(0xee); // nothing yet: the work waits for a safe point
    safePoint();
    expect(mem.direct[status]).toBe(0);
    expect(mem.direct.subarray(data, data + 1024)).toEqual(disk.subarray(5 * 512, 7 * 512));
    expect(ram.getUint16(used + 2, true)).toBe(1);
    safePoint(); // the bus applies the INTx level at a safe point too
    expect((config.read32(SLOT, PciReg.COMMAND) >>> 16) & PciStatus.INTERRUPT).toBe(PciStatus.INTERRUPT);
    expect(cpu.mmap_read8(BAR0 + 0x1000)).toBe(1);
    safePoint();
    expect((config.read32(SLOT, PciReg.COMMAND) >>> 16) & PciStatus.INTERRUPT).toBe(0);
    expect(blk.stats).toMatchObject({ requests: 1, bytesRead: 1024, interrupts: 1, dmaFaults: 0 });
  });

  it("keeps edu's fixed BAR for BIOS-less guests", () => {
    expect(config.read32(4, PciReg.BAR0)).toBe(0xfea0_0000);
  });
});

const SEABIOS = "/usr/share/seabios/bios.bin";
const haveSeabios = existsSync(SEABIOS);
if (!haveSeabios) console.warn(`v86-virtio.test: ${SEABIOS} not found (Debian package seabios); the SeaBIOS test is skipped`);

// CI (REQUIRE_LINUX=1, which installs seabios) runs it: a missing BIOS then fails instead of skipping.
describe.skipIf(!haveSeabios && process.env.REQUIRE_LINUX !== "1")("v86: SeaBIOS assigns the BAR and drives the device", () => {
  it("sizes BAR0, places it, enables decoding and bus mastering; its virtio driver reads sector 0 through the bus", async () => {
    const machine = await Machine.create({ wasmModule: await patchedV86Module(), bios: new Uint8Array(readFileSync(SEABIOS)) });
    let blk: VirtioBlkDevice | undefined;
    const platform = installPlatform(machine, {
      acpiInRam: false,
      acpiThroughFwCfg: true,
      attachDevices: (bus) => {
        blk = bus.attach({ name: "virtio-blk", device: SLOT, identity: virtioBlkPciIdentity(0xfe00_0000) }, (port) => new VirtioBlkDevice({ port, disk: new Uint8Array(1 << 20) })).device;
        return [{ bus: 0, dev: SLOT, fn: 0 }];
      },
    });
    // Stop once SeaBIOS has read from the disk (through the exit port, as a guest would).
    const exit = machine.cpu.io.ports[0xf4]!;
    const poll = setInterval(() => {
      if (blk!.stats.reads > 0) exit.write8.call(exit.device, 0);
    }, 20);
    const outcome = await machine.run(20_000).finally(() => clearInterval(poll));
    expect(outcome.reason).toBe("exit");
    const bar = machine.cpu.devices.pci.device_spaces[SLOT << 3]![4]! >>> 0;
    expect(bar).not.toBe(0xfe00_0000);
    expect(bar % 0x4000).toBe(0);
    expect(platform.bus.barWindow(SLOT << 3, 0)).toBe(bar);
    const command = machine.cpu.devices.pci.device_spaces[SLOT << 3]![1]! & 0xffff;
    expect(command & (COMMAND_MEMORY | COMMAND_BUS_MASTER)).toBe(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    expect(blk!.stats).toMatchObject({ reads: 1, bytesRead: 512, ioErrors: 0, dmaFaults: 0, deviceErrors: 0, featureNegotiationFailures: 0 });
    console.log(`SeaBIOS put virtio-blk's BAR0 at 0x${bar.toString(16)}, edu's at 0x${(machine.cpu.devices.pci.device_spaces[4 << 3]![4]! >>> 0).toString(16)}; first disk read after ${outcome.elapsedMs.toFixed(0)} ms`);
  });
});
