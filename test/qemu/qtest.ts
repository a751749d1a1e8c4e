/**
 * A small client for QEMU's qtest line protocol, used to run QEMU's intel-iommu as a
 * register-level oracle (see test/qemu/oracle.ts).
 *
 * Debian's QEMU (7.2, and 10.0 from bookworm-backports) has no qtest accelerator, so the CPU
 * runs under TCG. To keep it from doing anything, QEMU boots a 64 KiB "BIOS" whose reset vector
 * is `cli; hlt`, and `-icount shift=0,sleep=off` lets virtual time jump to the next timer while
 * the CPU is halted: an edu DMA (due 100 ms of virtual time after its command) then completes
 * within a few real milliseconds.
 * `clock_step` needs the qtest accelerator and is therefore not offered.
 *
 * QEMU's trace points (given in `traceEvents`) are printed on stderr; the client keeps those
 * lines so tests can see what QEMU did (fault reports, MSIs) beyond what the registers show.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { qemuVersionProblem } from "../../firmware/qemu.ts";

export const QEMU_BINARY = process.env.QEMU_SYSTEM_X86_64 ?? "qemu-system-x86_64";

/** The binary's version line, or why it cannot be used (not runnable, or older than the reference 10.0). */
export function probeQemu(binary = QEMU_BINARY): { ok: true; version: string } | { ok: false; reason: string } {
  const result = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (result.error) return { ok: false, reason: `${binary} cannot be run: ${result.error.message}` };
  if (result.status !== 0) return { ok: false, reason: `${binary} --version exited with ${result.status}: ${result.stderr.trim()}` };
  const version = result.stdout.split("\n")[0]?.trim() ?? "";
  const tooOld = qemuVersionProblem(version);
  if (tooOld) return { ok: false, reason: `${binary}: ${tooOld}` };
  return { ok: true, version };
}

/** intel-iommu's interrupt-remapping properties: intremap, and eim=off (v86 has no x2APIC; the unit has no EIM). */
export function intremapProperties(on: boolean): string[] {
  return on ? ["intremap=on", "eim=off"] : ["intremap=off"];
}

/** QEMU 10.0's scalable-mode properties of intel-iommu. */
export interface ScalableProperties {
  /** x-flts: first-stage translation (and, in 10.0, no second stage). */
  firstStage: boolean;
  /** x-pasid-mode: requests-with-PASID (ECAP.PASID, PSS = 0). */
  pasid: boolean;
}

export function scalableProperties(s: ScalableProperties | undefined): string[] {
  return s ? ["x-scalable-mode=on", `x-flts=${s.firstStage ? "on" : "off"}`, `x-pasid-mode=${s.pasid ? "on" : "off"}`] : [];
}

export interface QemuMachineOptions {
  /** intel-iommu aw-bits, always passed explicitly. Default 48 (QEMU 10.0's default, and the unit's). */
  awBits?: 39 | 48;
  /** intel-iommu caching-mode, always passed (default off, as QEMU's and the unit's). */
  cachingMode?: boolean;
  /** intel-iommu intremap (with eim=off), always passed (default on, as QEMU 10.0's q35 and the unit's). */
  interruptRemapping?: boolean;
  /** Scalable mode (x-scalable-mode=on) with x-flts and x-pasid-mode as given; undefined: the properties are not passed (off). */
  scalable?: ScalableProperties;
  /** Guest RAM in MiB. */
  memoryMiB?: number;
  /** PCI slots on bus 0 that get an edu device (function 0 each). */
  eduSlots?: readonly number[];
  /** QEMU trace points whose lines are collected from stderr (glob patterns allowed). */
  traceEvents?: readonly string[];
  binary?: string;
  /** How long to wait for QEMU to answer its first command. */
  startTimeoutMs?: number;
}

interface Pending {
  line: string;
  resolve: (answer: string) => void;
  reject: (error: Error) => void;
}

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** One QEMU process spoken to over stdin/stdout with the qtest protocol. */
export class QtestClient {
  /** stderr lines: trace output and QEMU's own messages, in arrival order. */
  readonly stderrLines: string[] = [];
  /** Asynchronous `IRQ raise/lower N` lines (only with irq_intercept_*). */
  readonly irqLines: string[] = [];
  readonly args: readonly string[];
  private readonly pending: Pending[] = [];
  private stdoutRest = "";
  private stderrRest = "";
  private exited: Error | null = null;
  private readonly exitPromise: Promise<void>;
  private stderrWaiters: Array<() => void> = [];

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    args: readonly string[],
    private readonly scratchDir: string,
  ) {
    this.args = args;
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => this.onStdout(chunk));
    child.stderr.on("data", (chunk: string) => this.onStderr(chunk));
    child.stdin.on("error", () => {
      // EPIPE after QEMU died; the exit handler reports it.
    });
    this.exitPromise = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exited = new Error(
          `QEMU exited (code ${code}, signal ${signal}); last stderr:\n${this.stderrLines.slice(-20).join("\n")}`,
        );
        for (const p of this.pending.splice(0)) p.reject(this.exited);
        for (const wake of this.stderrWaiters.splice(0)) wake();
        rmSync(this.scratchDir, { recursive: true, force: true });
        resolve();
      });
      child.on("error", (error) => {
        this.exited = new Error(`QEMU could not be started: ${error.message}`);
        for (const p of this.pending.splice(0)) p.reject(this.exited);
        rmSync(this.scratchDir, { recursive: true, force: true });
        resolve();
      });
    });
  }

  /** Starts a q35 machine with intel-iommu and edu devices. */
  static async start(options: QemuMachineOptions = {}): Promise<QtestClient> {
    const scratchDir = mkdtempSync(join(tmpdir(), "v86-vtd-qtest-"));
    const bios = join(scratchDir, "halt.bin");
    writeFileSync(bios, haltingBios());
    // Every property where a QEMU default could differ from the configuration under test is explicit.
    const iommu = ["intel-iommu", ...intremapProperties(options.interruptRemapping ?? true), `aw-bits=${options.awBits ?? 48}`, `caching-mode=${options.cachingMode ? "on" : "off"}`, ...scalableProperties(options.scalable)];
    const args = [
      "-M", "q35",
      "-bios", bios,
      "-icount", "shift=0,sleep=off",
      "-nodefaults", "-display", "none",
      "-m", `${options.memoryMiB ?? 128}M`,
      "-device", iommu.join(","),
      ...(options.eduSlots ?? [3]).flatMap((slot) => ["-device", `edu,addr=${slot.toString(16)}.0,dma_mask=0xffffffffffffffff`]),
      "-qtest", "stdio",
      "-qtest-log", "/dev/null",
      ...(options.traceEvents ?? []).flatMap((event) => ["-trace", event]),
    ];
    const child = spawn(options.binary ?? QEMU_BINARY, args, { stdio: ["pipe", "pipe", "pipe"] });
    const client = new QtestClient(child, args, scratchDir);
    const timeoutMs = options.startTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await Promise.race([
        client.command("endianness"),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`QEMU did not answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      if (answer !== "little") throw new Error(`unexpected endianness answer "${answer}"`);
    } catch (error) {
      await client.close();
      throw new Error(
        `starting QEMU failed: ${(error as Error).message}\ncommand: ${options.binary ?? QEMU_BINARY} ${args.join(" ")}\nstderr:\n${client.stderrLines.join("\n")}`,
      );
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** Sends one command line; resolves with the text after "OK" (trimmed), rejects on FAIL. */
  command(line: string): Promise<string> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      this.child.stdin.write(`${line}\n`);
    });
  }

  async readb(address: bigint): Promise<bigint> { return BigInt(await this.command(`readb ${hex(address)}`)); }
  async readw(address: bigint): Promise<bigint> { return BigInt(await this.command(`readw ${hex(address)}`)); }
  async readl(address: bigint): Promise<bigint> { return BigInt(await this.command(`readl ${hex(address)}`)); }
  async readq(address: bigint): Promise<bigint> { return BigInt(await this.command(`readq ${hex(address)}`)); }
  async writeb(address: bigint, value: bigint): Promise<void> { await this.command(`writeb ${hex(address)} ${hex(value)}`); }
  async writew(address: bigint, value: bigint): Promise<void> { await this.command(`writew ${hex(address)} ${hex(value)}`); }
  async writel(address: bigint, value: bigint): Promise<void> { await this.command(`writel ${hex(address)} ${hex(value)}`); }
  async writeq(address: bigint, value: bigint): Promise<void> { await this.command(`writeq ${hex(address)} ${hex(value)}`); }
  async outb(port: number, value: number): Promise<void> { await this.command(`outb ${hex(port)} ${hex(value)}`); }
  async outl(port: number, value: number): Promise<void> { await this.command(`outl ${hex(port)} ${hex(value >>> 0)}`); }
  async inl(port: number): Promise<number> { return Number(BigInt(await this.command(`inl ${hex(port)}`))); }

  /** Guest-physical memory, as the CPU sees it. */
  async readMemory(address: bigint, length: number): Promise<Uint8Array> {
    const answer = await this.command(`read ${hex(address)} ${hex(length)}`);
    return Uint8Array.from(Buffer.from(answer.replace(/^0x/, ""), "hex"));
  }
  async writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.command(`write ${hex(address)} ${hex(data.length)} 0x${Buffer.from(data).toString("hex")}`);
  }
  async fillMemory(address: bigint, length: number, byte: number): Promise<void> {
    await this.command(`memset ${hex(address)} ${hex(length)} ${hex(byte)}`);
  }

  /** Resolves once a stderr line matching `predicate` has arrived (looking at lines from `from` on). */
  async waitForStderr(predicate: (line: string) => boolean, from = 0, timeoutMs = 5_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.stderrLines.length; i++) if (predicate(this.stderrLines[i]!)) return i;
      from = this.stderrLines.length;
      if (this.exited) throw this.exited;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a QEMU stderr line");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.stderrWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  get running(): boolean {
    return this.exited === null;
  }

  /** Stops QEMU (qtest has no quit command): SIGTERM, then SIGKILL after 2 s. */
  async close(): Promise<void> {
    if (this.exited) return;
    this.child.stdin.end();
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 2_000);
    await this.exitPromise;
    clearTimeout(timer);
  }

  private onStdout(chunk: string): void {
    this.stdoutRest += chunk;
    let newline: number;
    while ((newline = this.stdoutRest.indexOf("\n")) >= 0) {
      const line = this.stdoutRest.slice(0, newline).trim();
      this.stdoutRest = this.stdoutRest.slice(newline + 1);
      if (line === "") continue;
      if (line.startsWith("IRQ ")) {
        this.irqLines.push(line);
        continue;
      }
      const pending = this.pending.shift();
      if (!pending) continue;
      if (line === "OK" || line.startsWith("OK ")) pending.resolve(line.slice(2).trim());
      else pending.reject(new Error(`qtest "${pending.line.slice(0, 80)}" answered "${line}"`));
    }
  }

  private onStderr(chunk: string): void {
    this.stderrRest += chunk;
    let newline: number;
    while ((newline = this.stderrRest.indexOf("\n")) >= 0) {
      this.stderrLines.push(this.stderrRest.slice(0, newline));
      this.stderrRest = this.stderrRest.slice(newline + 1);
    }
    for (const wake of this.stderrWaiters.splice(0)) wake();
  }
}

/** A 64 KiB BIOS image whose reset vector (at 0xFFFF0) is `cli; hlt; jmp $-3`. */
function haltingBios(): Uint8Array {
  const image = new Uint8Array(0x10000);
  image.set([0xfa, 0xf4, 0xeb, 0xfd], 0xfff0);
  return image;
}

// ---------------------------------------------------------------------------------------------
// PCI configuration space through the 0xCF8/0xCFC mechanism, and the edu device.

export function requesterId(bus: number, device: number, fn: number): number {
  return (bus << 8) | (device << 3) | fn;
}

export async function pciConfigRead32(client: QtestClient, sid: number, offset: number): Promise<number> {
  await client.outl(0xcf8, 0x8000_0000 | (sid << 8) | (offset & 0xfc));
  return client.inl(0xcfc);
}

export async function pciConfigWrite32(client: QtestClient, sid: number, offset: number, value: number): Promise<void> {
  await client.outl(0xcf8, 0x8000_0000 | (sid << 8) | (offset & 0xfc));
  await client.outl(0xcfc, value);
}

export const EDU_VENDOR_DEVICE = 0x11e8_1234;
/** edu's registers (offsets in BAR0) and its DMA buffer (device addresses). */
export const Edu = {
  ID: 0x00,
  DMA_SOURCE: 0x80,
  DMA_DESTINATION: 0x88,
  DMA_COUNT: 0x90,
  DMA_COMMAND: 0x98,
  COMMAND_START: 0x1,
  COMMAND_TO_RAM: 0x2,
  BUFFER_ADDRESS: 0x40000,
  BUFFER_SIZE: 0x1000,
  /**
   * What a DMA may use of the buffer. QEMU 7.2's edu checked the range with an off-by-one and
   * aborted (hw_error) on a DMA reaching the buffer's last byte; 10.0's accepts the whole buffer.
   */
  USABLE_BUFFER: 0x1000,
} as const;

/** Requester ids of the edu devices (function 0 of each slot) on PCI bus 0. */
export async function findEduDevices(client: QtestClient): Promise<number[]> {
  const found: number[] = [];
  for (let slot = 0; slot < 32; slot++) {
    const sid = requesterId(0, slot, 0);
    if ((await pciConfigRead32(client, sid, 0)) >>> 0 === EDU_VENDOR_DEVICE) found.push(sid);
  }
  return found;
}

/** One edu device whose BAR0 is placed at a fixed address with memory space and bus mastering on. */
export class EduOnQemu {
  private constructor(
    private readonly client: QtestClient,
    readonly sid: number,
    readonly bar: bigint,
  ) {}

  static async enable(client: QtestClient, sid: number, bar: bigint): Promise<EduOnQemu> {
    await pciConfigWrite32(client, sid, 0x10, Number(bar));
    await pciConfigWrite32(client, sid, 0x04, 0x6); // memory space | bus master
    const edu = new EduOnQemu(client, sid, bar);
    const id = await client.readl(bar + BigInt(Edu.ID));
    if ((id & 0xffn) !== 0xedn) throw new Error(`edu at sid ${hex(sid)}: BAR0 ${hex(bar)} reads id ${hex(id)}`);
    return edu;
  }

  /**
   * Copies `length` bytes between guest bus address `iova` and the device buffer at
   * `bufferOffset`, and waits until the device reports completion. edu ignores DMA errors: the
   * command completes either way.
   */
  async dma(direction: "toDevice" | "toMemory", iova: bigint, length: number, bufferOffset = 0): Promise<void> {
    if (length <= 0 || bufferOffset < 0 || bufferOffset + length > Edu.USABLE_BUFFER) {
      // edu calls hw_error (QEMU aborts) on a buffer range outside what it accepts.
      throw new RangeError(`edu DMA of ${length} bytes at buffer offset ${bufferOffset} is outside its buffer`);
    }
    const buffer = BigInt(Edu.BUFFER_ADDRESS + bufferOffset);
    const toMemory = direction === "toMemory";
    await this.client.writeq(this.bar + BigInt(Edu.DMA_SOURCE), toMemory ? buffer : iova);
    await this.client.writeq(this.bar + BigInt(Edu.DMA_DESTINATION), toMemory ? iova : buffer);
    await this.client.writeq(this.bar + BigInt(Edu.DMA_COUNT), BigInt(length));
    await this.client.writeq(this.bar + BigInt(Edu.DMA_COMMAND), BigInt(Edu.COMMAND_START | (toMemory ? Edu.COMMAND_TO_RAM : 0)));
    const deadline = Date.now() + 5_000;
    while ((await this.client.readq(this.bar + BigInt(Edu.DMA_COMMAND))) & BigInt(Edu.COMMAND_START)) {
      if (Date.now() > deadline) throw new Error(`edu ${hex(this.sid)}: DMA did not complete`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}
