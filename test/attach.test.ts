/**
 * attachVtd on a V86 the test creates itself with `new V86({...})`, as a user would (its own memory
 * size, the C test guest as its multiboot kernel, no Machine of ours): the guest finds the unit
 * (DMAR in RAM), runs its checks, and the unit's faults and invalidations arrive as v86 events;
 * the trace is subscribed only while someone listens. Refusals name their reason: a second attach,
 * something mapped at the unit's address, a running guest, no ACPI, a V86 made without vtdWasm.
 * detach() takes the unit and edu off the machine, and the unit can be attached again.
 */
import { readFileSync } from "node:fs";
import { V86 } from "v86";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureFirmware, firmwareToolsMissing } from "../firmware/build.ts";
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { attachVtd } from "../src/v86/attach.ts";
import { vtdWasm } from "../src/v86/attach-wasm.ts";
import type { V86Cpu, V86Emulator } from "../src/v86/internals.ts";
import { idleGuestImage } from "../src/v86/idle-guest.ts";
import { EDU_PCI_SLOT } from "../src/v86/platform.ts";
import { VTD_UNIT_BASE } from "../src/v86/unit-mmio.ts";
import { patchedV86Module, readV86Wasm } from "../src/v86/v86-wasm.node.ts";
import type { TraceEvent } from "../src/vtd-device/index.ts";

const toolsMissing = firmwareToolsMissing();
let kernel: Uint8Array;
let patched: WebAssembly.Module;

beforeAll(async () => {
  kernel = toolsMissing ? new Uint8Array(0) : new Uint8Array(readFileSync(await ensureFirmware()));
  patched = await patchedV86Module();
}, 120_000);

type UserOptions = Record<string, unknown>;

/** A V86 with the user's options, loaded and not started. */
async function userEmulator(options: UserOptions): Promise<V86Emulator> {
  const emulator = new V86({
    memory_size: 64 << 20, vga_memory_size: 2 << 20, autostart: false, acpi: true,
    disable_keyboard: true, disable_mouse: true, disable_speaker: true, net_device: { type: "none" },
    ...options,
  } as unknown as ConstructorParameters<typeof V86>[0]) as unknown as V86Emulator;
  await new Promise<void>((resolve) => emulator.add_listener("emulator-loaded", () => resolve()));
  return emulator;
}

const cpuOf = (emulator: V86Emulator) => emulator.v86.cpu as V86Cpu & { memory_map_read32: ((a: number) => number)[] };
const readUnit = (emulator: V86Emulator, offset: number) => cpuOf(emulator).memory_map_read32[VTD_UNIT_BASE >>> 17]!(VTD_UNIT_BASE + offset);

async function destroy(emulator: V86Emulator): Promise<void> {
  const stopped = emulator.stop();
  emulator.v86.next_tick(0);
  await stopped;
  await emulator.destroy();
}

describe.skipIf(toolsMissing !== null)("attachVtd on a user's own V86", () => {
  it("the guest finds the unit, and faults and invalidations arrive as v86 events only while someone listens", async () => {
    // Deterministic: the guest's interrupt checks wait in windows of guest time, which host load would stretch.
    const emulator = await userEmulator({ wasm_fn: vtdWasm(patched, { deterministic: true }), multiboot: { buffer: kernel.slice().buffer }, cmdline: "" });
    const vtd = attachVtd(emulator, { cachingMode: true, eduDmaMask: EDU_FULL_DMA_MASK });
    expect(vtd.acpi).toBe("ram");
    expect(vtd.unit.trace.active).toBe(false);
    const faults: TraceEvent[] = [];
    const invalidations: TraceEvent[] = [];
    const onInvalidation = (event: unknown) => invalidations.push(event as TraceEvent);
    emulator.add_listener("vtd-fault", (event) => faults.push(event as TraceEvent));
    emulator.add_listener("vtd-invalidation", onInvalidation);
    expect(vtd.unit.trace.active).toBe(true);
    let serial = "";
    emulator.add_listener("serial0-output-byte", (byte) => (serial += String.fromCharCode(byte as number)));
    const done = new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (/summary passed \d+ failed \d+/.test(serial)) {
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    // The user's machine has no exit port: v86's own at 0xF4 would throw out of its tick.
    const exitCodes: number[] = [];
    cpuOf(emulator).io.register_write(0xf4, {}, (value) => void exitCodes.push(value), () => {}, () => {});
    void emulator.run();
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 60_000))]);
    expect(serial).toMatch(/summary passed \d+ failed 0/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(exitCodes).toEqual([0]);
    // Every recorded fault came as an event (and the unrecorded ones too), with the reasons the guest provokes.
    expect(faults.length).toBeGreaterThanOrEqual(vtd.unit.stats.faultsRecorded);
    const reasons = new Set(faults.flatMap((event) => (event.type === "vtd_fault" ? [event.reason as number] : [])));
    for (const reason of [0x2, 0x4, 0x5, 0x6]) expect(reasons, `fault reason ${reason} seen`).toContain(reason);
    expect(faults.length).toBeGreaterThan(0);
    expect(faults.every((event) => event.type === "vtd_fault" || event.type === "vtd_ir_fault")).toBe(true);
    const { iotlbInvalidations, contextInvalidations } = vtd.unit.stats;
    const counted = iotlbInvalidations.global + iotlbInvalidations.domain + iotlbInvalidations.page + contextInvalidations.global + contextInvalidations.domain + contextInvalidations.device;
    expect(invalidations.filter((event) => event.type === "vtd_inv" && event.cache !== "device-iotlb")).toHaveLength(counted);
    emulator.remove_listener("vtd-invalidation", onInvalidation);
    expect(vtd.unit.trace.active).toBe(true); // vtd-fault still listened to
    vtd.detach();
    expect(vtd.unit.trace.active).toBe(false);
    await destroy(emulator);
  }, 120_000);

  it("refuses, naming why: twice, a device at the unit's address, a running guest, no ACPI, no vtdWasm", async () => {
    // A guest that never exits (v86's own port 0xF4 handler throws out of its tick when no unit is attached).
    const image = { multiboot: { buffer: idleGuestImage().slice().buffer }, cmdline: "" };
    const twice = await userEmulator({ wasm_fn: vtdWasm(patched), ...image });
    attachVtd(twice);
    expect(() => attachVtd(twice)).toThrow(/already attached/);
    await destroy(twice);

    const taken = await userEmulator({ wasm_fn: vtdWasm(patched), ...image });
    cpuOf(taken).io.mmap_register(0xfed8_0000, 0x2_0000, () => 0, () => {}, () => 0, () => {});
    expect(() => attachVtd(taken)).toThrow(/already mapped at 0xfed90000/);
    await destroy(taken);

    const running = await userEmulator({ wasm_fn: vtdWasm(patched), ...image });
    void running.run();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await running.stop();
    expect(() => attachVtd(running)).toThrow(/already running/);
    await running.destroy();

    const noAcpi = await userEmulator({ wasm_fn: vtdWasm(patched), ...image, acpi: false });
    expect(() => attachVtd(noAcpi)).toThrow(/acpi: true/);
    await destroy(noAcpi);

    const unpatched = await WebAssembly.compile(readV86Wasm() as Uint8Array<ArrayBuffer>);
    const plain = await userEmulator({ wasm_fn: async (imports: WebAssembly.Imports) => (await WebAssembly.instantiate(unpatched, imports)).exports, ...image });
    expect(() => attachVtd(plain)).toThrow(/wasm_fn: vtdWasm\(module\)/);
    await destroy(plain);
  }, 120_000);

  it("detach takes the unit and edu off the machine; the unit can be attached again", async () => {
    const emulator = await userEmulator({ wasm_fn: vtdWasm(patched), multiboot: { buffer: kernel.slice().buffer }, cmdline: "" });
    const unmapped = readUnit(emulator, 0);
    const first = attachVtd(emulator);
    expect(readUnit(emulator, 0)).toBe(0x10); // VER 1.0
    expect(cpuOf(emulator).devices.pci.device_spaces[EDU_PCI_SLOT << 3]).toBeDefined();
    first.detach();
    expect(readUnit(emulator, 0)).toBe(unmapped);
    expect(cpuOf(emulator).devices.pci.device_spaces[EDU_PCI_SLOT << 3]).toBeUndefined();
    const second = attachVtd(emulator, { cachingMode: true });
    expect(readUnit(emulator, 0)).toBe(0x10);
    expect(second.unit).not.toBe(first.unit);
    second.detach();
    await destroy(emulator);
  }, 60_000);
});
