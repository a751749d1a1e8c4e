/**
 * The v86 platform glue, from inside a guest: test/guests/platform-guest.c touches the VT-d
 * unit's MMIO block, drives the edu device (DMA through the IOMMU with translation off, MSI, INTx),
 * executes CLFLUSH and exits through port 0xF4. Plus the run's edge cases with tiny flat images.
 */
import { describe, expect, it } from "vitest";
import { Reg } from "../src/spec/index.ts";
import { runMultibootGuest, type RunGuestResult } from "../src/v86/run-guest.ts";
import { Machine } from "../src/v86/machine.ts";
import { installPlatform } from "../src/v86/platform.ts";
import { patchedV86Module } from "../src/v86/v86-wasm.node.ts";
import { buildCGuest, flatMultibootImage, haveGcc32, X86 } from "./support/multiboot-images.ts";

function results(transcript: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const match of transcript.matchAll(/^RESULT (\w+)=0x([0-9a-f]+)$/gm)) map.set(match[1]!, parseInt(match[2]!, 16));
  return map;
}

const gcc = haveGcc32();
if (!gcc) console.warn("v86-platform.test: gcc/ld for -m32 not found; the C guest test is skipped");

describe.skipIf(!gcc)("v86 platform: the C platform guest", () => {
  let run: RunGuestResult;
  let machine: Machine;
  const dmaSids = new Set<number>();
  const flushed = new Set<number>();
  let registerReads = 0;

  it("boots, runs every check and exits with 0 through port 0xF4", async () => {
    const kernel = buildCGuest("platform-guest");
    run = await runMultibootGuest({
      kernel,
      timeoutMs: 60_000,
      vtd: { cachingMode: true },
      onReady: (parts) => {
        machine = parts.machine;
        const { device } = parts;
        const read = device.dmaRead.bind(device);
        const write = device.dmaWrite.bind(device);
        device.dmaRead = (sid, iova, into) => (dmaSids.add(sid), read(sid, iova, into));
        device.dmaWrite = (sid, iova, data) => (dmaSids.add(sid), write(sid, iova, data));
        device.trace.subscribe((event) => {
          if (event.type === "vtd_reg_read") registerReads++;
        });
        machine.clflush.listener = (address) => flushed.add(address);
      },
    });
    expect(run.transcript).toContain("guest: done");
    expect(run.transcript).not.toContain("FAIL");
    expect(run).toMatchObject({ exitCode: 0, timedOut: false, stopReason: "exit" });
    console.log(`platform guest: ${run.elapsedMs.toFixed(0)} ms boot to exit, ${run.instructions} instructions`);
  });

  it("finds the RSDP at 0xE0000 in an area the memory map reserves", () => {
    const r = results(run.transcript);
    expect(r.get("rsdp_signature")).toBe(0x2044_5352); // "RSD "
    expect(r.get("acpi_area_reserved")).toBe(1);
  });

  it("reads the unit's registers through MMIO; outside the page reads all ones", () => {
    const r = results(run.transcript);
    const cap = run.device.readRegister(Reg.CAP, 8);
    expect(r.get("ver")).toBe(0x10);
    expect(r.get("ver8")).toBe(0x10);
    expect(r.get("cap_lo")).toBe(Number(cap & 0xffff_ffffn));
    expect(r.get("cap_hi")).toBe(Number(cap >> 32n));
    expect(r.get("ecap_lo")).toBe(Number(run.device.readRegister(Reg.ECAP, 4)));
    expect(r.get("below_unit")).toBe(0xffff_ffff);
    expect(r.get("past_page")).toBe(0xffff_ffff);
    expect(r.get("feaddr")).toBe(0xfee0_0000);
    expect(r.get("fedata")).toBe(0x41);
    expect(Number(run.device.readRegister(Reg.FEDATA, 4))).toBe(0x41);
    expect(registerReads).toBeGreaterThanOrEqual(8);
  });

  it("drives edu: config space, registers, DMA through the IOMMU as 00:04.0", () => {
    const r = results(run.transcript);
    expect(r.get("edu_pci_id")).toBe(0x11e8_1234);
    expect(r.get("edu_bar0")).toBe(0xfea0_0000);
    expect(r.get("edu_command")).toBe(0x6); // a 32-bit command write, which v86 alone drops
    expect(r.get("edu_irq_line")).toBe(11);
    expect(r.get("edu_id")).toBe(0x0100_00ed);
    expect(r.get("edu_liveness")).toBe(~0x1234_5678 >>> 0);
    expect(r.get("edu_factorial")).toBe(3_628_800);
    expect(r.get("dma_equal")).toBe(1);
    expect(run.edu.stats).toMatchObject({ dmaTransfers: 2, dmaFailures: 0, rangeErrors: 0 });
    expect([...dmaSids]).toEqual([0x20]);
  });

  it("delivers MSIs (also while JIT-compiled code spins), INTx and a HLT woken by a real interrupt", () => {
    const r = results(run.transcript);
    expect(r.get("msi_count")).toBe(1 + 300);
    expect(r.get("intx_count")).toBe(100);
    expect(r.get("hlt_woken_by_timer")).toBe(1);
  });

  it("executes JIT-compiled CLFLUSH without #UD, reporting addresses", () => {
    const r = results(run.transcript);
    const source = r.get("src_addr")!;
    expect(run.transcript).toContain("guest: clflush ok");
    expect(run.clflushes).toBe(100_000);
    expect(machine.clflush.compiled).toBeGreaterThan(0);
    expect([...flushed].sort((a, b) => a - b)).toEqual([source, source + 64, source + 128, source + 192]);
  });
});

describe.skipIf(!gcc)("v86 platform: edu with QEMU's DMA timing", () => {
  it("completes each DMA only after eduDmaDelayMs, the guest waiting for it", async () => {
    const run = await runMultibootGuest({ kernel: buildCGuest("platform-guest"), timeoutMs: 60_000, eduDmaDelayMs: 100 });
    expect(run).toMatchObject({ exitCode: 0, stopReason: "exit" });
    expect(results(run.transcript).get("dma_equal")).toBe(1);
    expect(run.elapsedMs).toBeGreaterThanOrEqual(200);
  });
});

describe("v86 platform: how a run ends", () => {
  it("refuses a file that is not a multiboot image", async () => {
    await expect(runMultibootGuest({ kernel: new Uint8Array(16384) })).rejects.toThrow(/not a multiboot image.*0x1BADB002/);
  });

  it("returns the exit code written to port 0xF4", async () => {
    const run = await runMultibootGuest({ kernel: flatMultibootImage(X86.exit(42)), timeoutMs: 10_000 });
    expect(run).toMatchObject({ exitCode: 42, timedOut: false, stopReason: "exit" });
  });

  it("executes an interpreted CLFLUSH without #UD and reports its address", async () => {
    const addresses: number[] = [];
    let machine: Machine | undefined;
    const run = await runMultibootGuest({
      kernel: flatMultibootImage([...X86.clflush(0x12_3440), ...X86.exit(7)]),
      timeoutMs: 10_000,
      onReady: (parts) => {
        machine = parts.machine;
        machine.clflush.listener = (address) => addresses.push(address);
      },
    });
    expect(run).toMatchObject({ exitCode: 7, clflushes: 1 });
    expect(machine!.clflush.interpreted).toBe(1);
    expect(addresses).toEqual([0x12_3440]);
  });

  it("times out a guest that never exits", async () => {
    const started = performance.now();
    const run = await runMultibootGuest({ kernel: flatMultibootImage(X86.spin), timeoutMs: 300 });
    expect(run).toMatchObject({ exitCode: null, timedOut: true, stopReason: "timeout" });
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("ends at once when the guest halts with interrupts off", async () => {
    const run = await runMultibootGuest({ kernel: flatMultibootImage(X86.cliHlt), timeoutMs: 10_000 });
    expect(run).toMatchObject({ exitCode: null, timedOut: false, stopReason: "halted" });
    expect(run.elapsedMs).toBeLessThan(5_000);
  });

  it("turns an exception before the guest has an IDT into a clear error", async () => {
    await expect(runMultibootGuest({ kernel: flatMultibootImage(X86.ud2), timeoutMs: 10_000 })).rejects.toThrow(/v86 stopped.*IDT/);
  });
});

describe("v86 platform: fw_cfg item 0x8000 for SeaBIOS boots", () => {
  /** Selects fw_cfg `item`, reads `skip` bytes, and exits with the next byte. */
  const readFwCfgByte = (item: number, skip: number) =>
    flatMultibootImage([
      0x66, 0xba, 0x10, 0x05, // mov dx, 0x510
      0x66, 0xb8, item & 0xff, item >> 8, // mov ax, item
      0x66, 0xef, // out dx, ax
      0x66, 0xba, 0x11, 0x05, // mov dx, 0x511
      ...new Array<number>(skip + 1).fill(0xec), // in al, dx
      0xe6, 0xf4, // out 0xF4, al
    ]);

  async function run(image: Uint8Array): Promise<number | null> {
    const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: image });
    installPlatform(machine, { acpiInRam: false, acpiThroughFwCfg: true });
    return (await machine.run(10_000)).exitCode;
  }

  it("serves u16 count, u16 length, then the DMAR table", async () => {
    expect(await run(readFwCfgByte(0x8000, 0))).toBe(1); // one table
    expect(await run(readFwCfgByte(0x8000, 4))).toBe("D".charCodeAt(0));
  });

  it("leaves v86's other items alone", async () => {
    expect(await run(readFwCfgByte(0x0000, 0))).toBe("Q".charCodeAt(0)); // the "QEMU" signature
  });
});

describe("v86 platform: DMA and v86's JIT", () => {
  it("a DMA write through the unit's fast path drops v86's compiled code in the range written", async () => {
    const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: flatMultibootImage(X86.exit(0)) });
    const platform = installPlatform(machine, { multibootInfoAddress: machine.cpu.reg32[3]! >>> 0 });
    const dirtied: [number, number][] = [];
    const original = machine.cpu.jit_dirty_cache.bind(machine.cpu);
    machine.cpu.jit_dirty_cache = (start: number, end: number) => {
      dirtied.push([start, end]);
      original(start, end);
    };
    // Translation is off: the edu requester id's DMA goes straight to RAM, through `direct`.
    expect(platform.device.dmaWrite(0x20, 0x30_0000, new Uint8Array(4096).fill(0x90)).ok).toBe(true);
    expect(dirtied).toContainEqual([0x30_0000, 0x30_1000]);
    expect(machine.memory.direct[0x30_0fff]).toBe(0x90);
    await machine.stop();
  });
});
