/**
 * One run of a guest in the page (the C test guest, or Linux): a v86 machine with the unit attached through the
 * package's public entry (`v86-vtd/v86`: Machine and attachVtd, as attach-run.ts does), the
 * recorder fed from it, and the controls a learner uses (pause, step to the unit's next event,
 * resume, stop). The page fetches v86.wasm and the guest itself.
 */
import { EDU_FULL_DMA_MASK } from "../src/devices/edu.ts";
import { attachVirtioDisk } from "../src/linux/virtio-disk.ts";
import {
  attachVtd, EDU_PCI_SLOT, Machine, type DmaTranslator, type MachineOutcome, type V86PciBus, type VtdAttachment,
} from "../src/v86/index.ts";
import type { VtdDevice } from "../src/vtd-device/index.ts";
import { VfioAssignment } from "../src/vfio/index.ts";
import { RunRecorder } from "./recorder.ts";
import { guestCmdline, type DemoSettings } from "./settings.ts";

export const GUEST_MEMORY_BYTES = 64 << 20;
/** Linux: v86 loads the initrd at 64 MiB; the workload keeps two copies in RAM (as src/linux/boot.ts's defaults). */
export const LINUX_MEMORY_BYTES = 128 << 20;
export const LINUX_DISK_BYTES = 16 << 20;

/** What the page fetched: v86, the C test guest, and the Linux guest's files once asked for. */
export interface GuestAssets {
  wasmModule: WebAssembly.Module;
  guest: Uint8Array;
  linux?: { bzImage: Uint8Array; initrd: Uint8Array; bios: Uint8Array; vgaBios: Uint8Array };
}
/** edu at 00:04.0: its requester id. */
export const EDU_SID = EDU_PCI_SLOT << 3;
/** No host-time limit on the guest (Reset ends it): the longest setTimeout. */
const NO_TIMEOUT_MS = 2 ** 31 - 1;
/** Step runs to the unit's next invalidation, queue descriptor or fault, or this long at most. */
export const STEP_LIMIT_MS = 250;

export type RunState = "running" | "paused" | "finished" | "failed";

export interface SessionEvents {
  onSerial(text: string): void;
  onState(state: RunState, detail: string): void;
}

/** A DMA path that counts what the unit moved for the timeline, then hands the request on. */
function countingDma(unit: VtdDevice, recorder: RunRecorder): DmaTranslator {
  return {
    dmaRead(sid, iova, into) {
      const result = unit.dmaRead(sid, iova, into);
      if (result.ok) recorder.countDma(into.length);
      return result;
    },
    dmaWrite(sid, iova, data) {
      const result = unit.dmaWrite(sid, iova, data);
      if (result.ok) recorder.countDma(data.length);
      return result;
    },
  };
}

/**
 * A VFIO-like shadow of edu's address space, as QEMU's VFIO keeps one behind a vIOMMU. Shown
 * only: edu's DMA still goes through the unit, so the guest still sees its faults (through a
 * host IOMMU it would not).
 */
function assignShadow(unit: VtdDevice): VfioAssignment | string {
  if (!unit.options.cachingMode) return "the VFIO-like shadow needs caching mode (CAP.CM = 1): without it the unit cannot report new mappings, so QEMU refuses VFIO too";
  try {
    return new VfioAssignment(unit, EDU_SID);
  } catch (error) {
    return `assigning edu failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

export class Session {
  state: RunState = "paused";
  outcome: MachineOutcome | undefined;
  /** Host ms from creating the machine to the guest's exit. */
  bootToExitMs: number | undefined;
  transcript = "";
  /** edu's VFIO-like shadow (setting vfio), or why there is none. */
  vfio: VfioAssignment | string | undefined;
  private stepping: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    readonly recorder: RunRecorder,
    readonly machine: Machine,
    readonly attachment: VtdAttachment,
    readonly settings: DemoSettings,
    private readonly events: SessionEvents,
    /** When the machine began to be created (performance.now()). */
    private readonly started: number,
  ) {}

  get device(): VtdDevice {
    return this.attachment.unit;
  }

  static async start(assets: GuestAssets, settings: DemoSettings, events: SessionEvents): Promise<Session> {
    const started = performance.now();
    const linux = settings.guest === "linux" ? assets.linux : undefined;
    if (settings.guest === "linux" && !linux) throw new Error("the Linux guest's files are not loaded");
    const machine = await Machine.create({
      wasmModule: assets.wasmModule,
      deterministic: settings.deterministic,
      cmdline: guestCmdline(settings),
      ...(linux
        ? { memoryBytes: LINUX_MEMORY_BYTES, bios: linux.bios, vgaBios: linux.vgaBios, bzImage: linux.bzImage, initrd: linux.initrd }
        : { memoryBytes: GUEST_MEMORY_BYTES, multiboot: assets.guest }),
    });
    const recorder = new RunRecorder();
    // A multiboot kernel without BIOS: attachVtd writes the DMAR into RAM and leaves edu as SeaBIOS
    // would. Linux boots through SeaBIOS, which gets the DMAR through fw_cfg; its disk is a
    // RAM-backed virtio-blk whose DMA goes through the unit (as npm run linux).
    let attachment: VtdAttachment;
    try {
      attachment = attachVtd(machine.emulator, {
        cachingMode: settings.cachingMode,
        coherent: settings.coherent,
        awBits: settings.awBits,
        queueDescriptorTimeMs: settings.descriptorMs,
        checker: recorder.checkerOption,
        acpi: linux ? "fw_cfg" : "ram",
        // The C guest provokes a fault beyond MGAW: edu must not clip its bus addresses (as npm start).
        eduDmaMask: EDU_FULL_DMA_MASK,
        interposeDma: (unit) => countingDma(unit, recorder),
        ...(linux ? { attachDevices: (bus: V86PciBus) => [attachVirtioDisk(bus, new Uint8Array(LINUX_DISK_BYTES)).endpoint] } : {}),
      });
    } catch (error) {
      await machine.stop();
      throw error;
    }
    const session = new Session(recorder, machine, attachment, settings, events, started);
    const unit = attachment.unit;
    recorder.attach(unit);
    recorder.watchAddressSpace(unit, EDU_SID);
    if (settings.vfio) session.vfio = assignShadow(unit);
    unit.trace.subscribe((event) => {
      if (session.stepping !== undefined && (event.type === "vtd_inv" || event.type === "vtd_iq_desc" || event.type === "vtd_fault")) session.endStep();
    });
    machine.onSerial((text) => {
      session.transcript += text;
      events.onSerial(text);
    });
    session.run();
    if (settings.startPaused) await session.pause();
    return session;
  }

  private run(): void {
    this.state = "running";
    this.events.onState("running", "");
    this.machine.run(NO_TIMEOUT_MS).then(
      (outcome) => {
        this.outcome = outcome;
        this.bootToExitMs = performance.now() - this.started;
        this.state = "finished";
        const how = outcome.reason === "exit" ? `exit ${outcome.exitCode}` : outcome.reason;
        this.events.onState("finished", `${how} after ${(this.bootToExitMs / 1000).toFixed(2)} s, ${outcome.instructions} instructions`);
      },
      (error: unknown) => {
        this.state = "failed";
        this.events.onState("failed", error instanceof Error ? error.message : String(error));
      },
    );
  }

  /** Stops the CPU (at the end of v86's current slice); the unit's clock stops with it. */
  async pause(): Promise<void> {
    if (this.state !== "running") return;
    this.clearStep();
    this.state = "paused";
    const v86 = this.machine.emulator.v86;
    const stopped = this.machine.emulator.stop();
    v86.next_tick(0);
    await stopped;
    if (this.state === "paused") this.events.onState("paused", "");
  }

  resume(): void {
    if (this.state !== "paused") return;
    this.clearStep();
    this.state = "running";
    this.events.onState("running", "");
    void this.machine.emulator.run();
  }

  /** Runs until the unit's next invalidation, queue descriptor or fault (or STEP_LIMIT_MS), then pauses. */
  step(): void {
    if (this.state !== "paused") return;
    this.resume();
    this.stepping = setTimeout(() => this.endStep(), STEP_LIMIT_MS);
  }

  private endStep(): void {
    this.clearStep();
    void this.pause();
  }

  private clearStep(): void {
    if (this.stepping !== undefined) clearTimeout(this.stepping);
    this.stepping = undefined;
  }

  /** Ends the run and frees the machine. */
  async stop(): Promise<void> {
    this.clearStep();
    if (this.state === "finished" || this.state === "failed") return;
    this.state = "finished";
    this.machine.requestStop();
    await this.machine.stop();
  }
}
