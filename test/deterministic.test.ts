/**
 * Deterministic runs on v86 (MachineOptions.deterministic): guest time follows guest instructions.
 *
 * 1. A tiny hand-assembled guest reads every clock v86 gives it (TSC, PIT, local APIC timer,
 *    ACPI PM timer, RTC date, RDRAND): the values are the same run to run, follow the
 *    instructions executed (twice the ns per instruction, twice the ticks), and the RTC shows the
 *    configured date, not the host's. Another one halts until a local APIC timer interrupt 50 ms
 *    ahead: guest time jumps over the wait (no instructions run, no host time is waited).
 * 2. The C test guest boots twice, once while the host is loaded by other work (busy worker
 *    threads and a main-thread timer that keeps stealing the event loop): the serial transcript
 *    and the unit's trace, each event stamped with the guest instruction count and guest time at
 *    which it happened, are equal byte for byte. Controls: another ns-per-instruction gives another
 *    guest-visible time, and two runs on host time differ.
 */
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureFirmware, firmwareToolsMissing } from "../firmware/build.ts";
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { Machine, type MachineOutcome } from "../src/v86/machine.ts";
import { runMultibootGuest, type RunGuestResult } from "../src/v86/run-guest.ts";
import { patchedV86Module } from "../src/v86/v86-wasm.node.ts";
import { resolveDeterministic, type DeterministicOptions } from "../src/v86/virtual-clock.ts";
import type { TraceEvent } from "../src/vtd-device/index.ts";
import { flatMultibootImage } from "./support/multiboot-images.ts";

/** Runs `work` while two worker threads spin and a main-thread timer burns 2 ms of every 3. */
async function underHostLoad<T>(work: () => Promise<T>): Promise<{ result: T; burns: number }> {
  const workers = [0, 1].map(() => new Worker("for (;;) {}", { eval: true }));
  let burns = 0;
  const burner = setInterval(() => {
    const until = performance.now() + 2;
    while (performance.now() < until) {
      // the host is busy with other work
    }
    burns++;
  }, 3);
  try {
    return { result: await work(), burns };
  } finally {
    clearInterval(burner);
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

// ---- 1. The clock probe: a flat multiboot guest (loaded at 1 MiB, flat protected mode, IF = 0) ----

const OUT = 0x10_2000;
const LOOP_ITERATIONS = 100_000;
const APIC_INITIAL_COUNT = 0x7fff_ffff;
const RTC_REGISTERS = [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32]; // seconds, minutes, hours, day, month, year, century

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const storeEax = (address: number) => [0xa3, ...le32(address)]; // mov [address], eax
const storeEdx = (address: number) => [0x89, 0x15, ...le32(address)]; // mov [address], edx
const storeAl = (address: number) => [0xa2, ...le32(address)]; // mov [address], al
const outAl = (port: number, value: number) => [0xb0, value, 0xe6, port]; // mov al, value; out port, al
const inAl = (port: number) => [0xe4, port]; // in al, port

const PROBE = {
  tsc0: 0x00, // rdtsc before the loop (8 bytes)
  tsc1: 0x08, // rdtsc after it (8 bytes)
  pit: 0x10, // PIT channel 0 latched count after the loop (2 bytes)
  apic: 0x14, // local APIC timer current count after the loop
  acpiPm: 0x18, // ACPI PM timer (port 0xB008)
  rdrand: 0x1c,
  rtc: 0x20, // RTC_REGISTERS, one byte each
} as const;

function clockProbeImage(): Uint8Array {
  const code = [
    ...outAl(0x43, 0x34), ...outAl(0x40, 0), ...outAl(0x40, 0), // PIT channel 0: mode 2, reload 65536
    0xc7, 0x05, ...le32(0xfee0_0380), ...le32(APIC_INITIAL_COUNT), // local APIC timer initial count
    0x0f, 0x31, ...storeEax(OUT + PROBE.tsc0), ...storeEdx(OUT + PROBE.tsc0 + 4), // rdtsc
    0xb9, ...le32(LOOP_ITERATIONS), 0x49, 0x75, 0xfd, // mov ecx, N; dec ecx; jnz (2N instructions)
    0x0f, 0x31, ...storeEax(OUT + PROBE.tsc1), ...storeEdx(OUT + PROBE.tsc1 + 4),
    ...outAl(0x43, 0x00), ...inAl(0x40), ...storeAl(OUT + PROBE.pit), ...inAl(0x40), ...storeAl(OUT + PROBE.pit + 1), // latch, read
    0xa1, ...le32(0xfee0_0390), ...storeEax(OUT + PROBE.apic), // local APIC timer current count
    0x66, 0xba, 0x08, 0xb0, 0xed, ...storeEax(OUT + PROBE.acpiPm), // mov dx, 0xB008; in eax, dx
    0x0f, 0xc7, 0xf0, ...storeEax(OUT + PROBE.rdrand), // rdrand eax
    ...RTC_REGISTERS.flatMap((register, i) => [...outAl(0x70, register), ...inAl(0x71), ...storeAl(OUT + PROBE.rtc + i)]),
    ...outAl(0xf4, 0), 0xfa, 0xf4, // exit 0; cli; hlt
  ];
  return flatMultibootImage(code);
}

interface Probe {
  outcome: MachineOutcome;
  tsc0: bigint;
  tsc1: bigint;
  pitCount: number;
  apicCount: number;
  acpiPm: number;
  rdrand: number;
  rtc: number[];
  bytes: string;
}

async function probeClocks(deterministic: boolean | DeterministicOptions): Promise<Probe> {
  const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: clockProbeImage(), deterministic });
  const outcome = await machine.run(20_000);
  expect(outcome).toMatchObject({ reason: "exit", exitCode: 0 });
  const bytes = machine.cpu.read_blob(OUT, PROBE.rtc + RTC_REGISTERS.length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    outcome,
    tsc0: view.getBigUint64(PROBE.tsc0, true),
    tsc1: view.getBigUint64(PROBE.tsc1, true),
    pitCount: view.getUint16(PROBE.pit, true),
    apicCount: view.getUint32(PROBE.apic, true),
    acpiPm: view.getUint32(PROBE.acpiPm, true),
    rdrand: view.getUint32(PROBE.rdrand, true),
    rtc: Array.from(bytes.subarray(PROBE.rtc)),
    bytes: Buffer.from(bytes).toString("hex"),
  };
}

// A guest that sets up a GDT and an IDT, arms the local APIC timer one-shot 50 ms ahead, halts
// until its interrupt, and stores the TSC before and after.
const HALT_WAIT_MS = 50;
const TIMER_VECTOR = 0x30;

function haltProbeImage(): Uint8Array {
  const base = 0x10_0020; // the code's address (after the 32-byte multiboot header)
  const gdt = 0x10_0800, gdtr = 0x10_0880, idtr = 0x10_0890, idt = 0x10_0900, handler = 0x10_0c00;
  const apicWrite = (register: number, value: number) => [0xc7, 0x05, ...le32(0xfee0_0000 + register), ...le32(value)];
  const head = [0xfa, 0x0f, 0x01, 0x15, ...le32(gdtr), 0x0f, 0x01, 0x1d, ...le32(idtr)]; // cli; lgdt; lidt
  const flat = base + head.length + 7;
  const code = [
    ...head,
    0xea, ...le32(flat), 0x08, 0x00, // jmp 0x08:flat
    0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, // mov ax, 0x10; mov ds/es/ss, ax
    0xbc, ...le32(0x10_3000), // mov esp, 0x103000
    ...outAl(0x21, 0xff), ...outAl(0xa1, 0xff), // mask both 8259s
    ...apicWrite(0xf0, 0x1ff), // spurious vector register: APIC on
    ...apicWrite(0x320, TIMER_VECTOR), // LVT timer: one-shot, this vector
    ...apicWrite(0x3e0, 0x0b), // divide by 1 (v86's APIC timer counts at 1 GHz)
    0x0f, 0x31, ...storeEax(OUT + PROBE.tsc0), ...storeEdx(OUT + PROBE.tsc0 + 4),
    ...apicWrite(0x380, HALT_WAIT_MS * 1_000_000), // initial count: starts the timer
    0xfb, 0xf4, // sti; hlt
    0x0f, 0x31, ...storeEax(OUT + PROBE.tsc1), ...storeEdx(OUT + PROBE.tsc1 + 4),
    ...outAl(0xf4, 0), 0xfa, 0xf4,
  ];
  const image = new Uint8Array(handler + 1 - base);
  image.set(code, 0);
  const gate = (address: number) => [address & 0xff, (address >> 8) & 0xff, 0x08, 0x00, 0x00, 0x8e, (address >>> 16) & 0xff, address >>> 24];
  image.set([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0, 0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0], gdt - base); // null, flat code, flat data
  image.set([0x17, 0x00, ...le32(gdt)], gdtr - base);
  image.set([(TIMER_VECTOR + 1) * 8 - 1, 0x01, ...le32(idt)], idtr - base);
  for (let vector = 0; vector <= TIMER_VECTOR; vector++) image.set(gate(handler), idt - base + vector * 8);
  image[handler - base] = 0xcf; // iret
  return flatMultibootImage(Array.from(image));
}

const bcd = (n: number) => ((Math.floor(n / 10) % 10) << 4) | n % 10;

describe("deterministic v86: the guest's clocks follow its instructions", () => {
  let first: Probe;

  beforeAll(async () => {
    first = await probeClocks(true);
  });

  it("reads the same TSC, PIT, APIC timer, ACPI PM timer, RTC and RDRAND values in a second run under host load", async () => {
    const { result: second, burns } = await underHostLoad(() => probeClocks(true));
    expect(burns).toBeGreaterThan(0);
    expect(second.bytes).toBe(first.bytes);
    expect(second.outcome.instructions).toBe(first.outcome.instructions);
    expect(second.outcome.guestMs).toBe(first.outcome.guestMs);
  });

  it("TSC, PIT, APIC timer and ACPI PM timer advance with instructions: 10 ns each by default, twice as much at 20 ns", async () => {
    const loopInstructions = 2 * LOOP_ITERATIONS;
    const slow = await probeClocks({ nsPerInstruction: 20 });
    for (const [probe, ns] of [[first, 10], [slow, 20]] as const) {
      const tscNs = Number(probe.tsc1 - probe.tsc0); // v86's TSC ticks once per ns
      expect(tscNs).toBeGreaterThanOrEqual(loopInstructions * ns);
      expect(tscNs).toBeLessThanOrEqual((loopInstructions + 40) * ns);
      const loopMs = (loopInstructions * ns) / 1e6;
      const pitTicks = 0xffff - probe.pitCount; // 1.193182 MHz, counting down from 65535
      expect(pitTicks).toBeGreaterThanOrEqual(Math.floor(1193.18 * loopMs));
      expect(pitTicks).toBeLessThanOrEqual(Math.ceil(1193.18 * (loopMs * 1.01 + 0.01)));
      // Guest time starts at 0 at power-on: the PM timer (3.579545 MHz) is not the host's uptime.
      expect(probe.acpiPm).toBeGreaterThan(0);
      expect(probe.acpiPm).toBeLessThanOrEqual(Math.ceil(3579.545 * probe.outcome.guestMs) + 1);
    }
    const apicTicks = (probe: Probe) => APIC_INITIAL_COUNT - probe.apicCount;
    expect(apicTicks(first)).toBeGreaterThan(0);
    expect(apicTicks(slow) / apicTicks(first)).toBeCloseTo(2, 1);
  });

  it("the RTC shows the configured date (default 2024-01-01 00:00:00 UTC), not the host's", async () => {
    const rtcOf = (date: Date) => [date.getUTCSeconds(), date.getUTCMinutes(), date.getUTCHours(), date.getUTCDate(), date.getUTCMonth() + 1, date.getUTCFullYear() % 100, Math.floor(date.getUTCFullYear() / 100)].map(bcd);
    expect(first.rtc).toEqual(rtcOf(new Date(Date.UTC(2024, 0, 1))));
    const christmas = Date.UTC(2031, 11, 25, 13, 45, 0);
    const other = await probeClocks({ rtcStartMs: christmas });
    expect(other.rtc).toEqual(rtcOf(new Date(christmas)));
  });

  it("a halted CPU jumps to its next timer: 50 ms of guest time pass with no instructions and no host wait", async () => {
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const machine = await Machine.create({ wasmModule: await patchedV86Module(), multiboot: haltProbeImage(), deterministic: true });
      const outcome = await machine.run(20_000);
      expect(outcome).toMatchObject({ reason: "exit", exitCode: 0 });
      const view = new DataView(machine.cpu.read_blob(OUT, 16).slice().buffer);
      const waitedNs = Number(view.getBigUint64(PROBE.tsc1, true) - view.getBigUint64(PROBE.tsc0, true));
      runs.push({ instructions: outcome.instructions, guestMs: outcome.guestMs, waitedNs, idleMs: machine.clock!.idleMs });
    }
    const [run] = runs;
    expect(run!.instructions).toBeLessThan(1000);
    expect(run!.waitedNs).toBeGreaterThanOrEqual(HALT_WAIT_MS * 1e6);
    expect(run!.waitedNs).toBeLessThan((HALT_WAIT_MS + 1) * 1e6);
    expect(run!.idleMs).toBeGreaterThanOrEqual(HALT_WAIT_MS - 0.1);
    expect(runs[1]).toEqual(run);
  });

  it("RDRAND follows the seed", async () => {
    const reseeded = await probeClocks({ seed: 2 });
    expect(reseeded.rdrand).not.toBe(first.rdrand);
    expect((await probeClocks({ seed: 1 })).rdrand).toBe(first.rdrand);
  });

  it("refuses bad options, naming them", () => {
    expect(() => resolveDeterministic({ nsPerInstruction: 0 })).toThrow(/deterministic.nsPerInstruction/);
    expect(() => resolveDeterministic({ rtcStartMs: 1.5 })).toThrow(/deterministic.rtcStartMs/);
    expect(() => resolveDeterministic({ seed: Number.NaN })).toThrow(/deterministic.seed/);
    expect(resolveDeterministic(false)).toBeUndefined();
  });
});

// ---- 2. The C test guest, twice ----

const toolsMissing = firmwareToolsMissing();
if (toolsMissing) console.warn(`deterministic.test: the C guest part is skipped: ${toolsMissing}`);

interface RecordedRun {
  run: RunGuestResult;
  /** One line per unit trace event: guest instructions, guest ms, the event (bigints as hex). */
  trace: string;
}

function serialise(event: TraceEvent): string {
  return JSON.stringify(event, (_key, value: unknown) => (typeof value === "bigint" ? `0x${value.toString(16)}` : value));
}

async function bootCGuest(kernel: Uint8Array, deterministic: boolean | DeterministicOptions): Promise<RecordedRun> {
  const lines: string[] = [];
  const run = await runMultibootGuest({
    kernel,
    vtd: { cachingMode: true },
    eduDmaMask: EDU_FULL_DMA_MASK,
    timeoutMs: 60_000,
    deterministic,
    onReady: ({ device, machine }) => {
      device.trace.subscribe((event) => lines.push(`${machine.instructions} ${machine.guestMs} ${serialise(event)}`));
    },
  });
  expect(run).toMatchObject({ exitCode: 0, timedOut: false, stopReason: "exit" });
  return { run, trace: lines.join("\n") };
}

const elapsedLine = (transcript: string) => /^PLATFORM elapsed-ms .*$/m.exec(transcript)?.[0];

describe.skipIf(toolsMissing !== null)("deterministic v86: the C test guest gives the same run twice", () => {
  let kernel: Uint8Array;
  let quiet: RecordedRun;

  beforeAll(async () => {
    kernel = new Uint8Array(readFileSync(await ensureFirmware()));
    quiet = await bootCGuest(kernel, true);
  });

  it("the same transcript and unit trace, byte for byte, on a quiet and on a loaded host", async () => {
    const { result: loaded, burns } = await underHostLoad(() => bootCGuest(kernel, true));
    expect(burns).toBeGreaterThan(0);
    expect(quiet.trace.split("\n").length).toBeGreaterThan(100);
    expect(elapsedLine(quiet.run.transcript)).toBeDefined();
    expect(loaded.run.transcript).toBe(quiet.run.transcript);
    expect(loaded.trace).toBe(quiet.trace);
    expect(loaded.run.instructions).toBe(quiet.run.instructions);
    expect(loaded.run.guestMs).toBe(quiet.run.guestMs);
  });

  it("control: another ns per instruction gives the guest another time", async () => {
    const slower = await bootCGuest(kernel, { nsPerInstruction: 20 });
    expect(elapsedLine(slower.run.transcript)).not.toBe(elapsedLine(quiet.run.transcript));
    expect(slower.trace).not.toBe(quiet.trace);
  });

  it("control: on host time (the option off) two runs differ", async () => {
    const first = await bootCGuest(kernel, false);
    const { result: second } = await underHostLoad(() => bootCGuest(kernel, false));
    expect(second.trace).not.toBe(first.trace);
  });
});
