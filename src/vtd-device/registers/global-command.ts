/**
 * The global command register GCMD (VT-d §11.4.4) and the status GSTS reports (§11.4.5):
 * one-shot bits act when written as 1, persistent bits when they differ from their status.
 * Every command completes within the write (a guest polling GSTS sees it done).
 */
import { Gcmd, Gsts, Reg } from "../../spec/registers.ts";
import type { Invalidation } from "../invalidation/cache-invalidation.ts";
import type { InvalidationQueue } from "../invalidation/invalidation-queue.ts";
import type { InterruptRemapping } from "../interrupts/interrupt-remapping.ts";
import type { ResolvedOptions } from "../options.ts";
import type { DeviceStats } from "../stats.ts";
import type { Tracer } from "../trace.ts";
import type { Translator } from "../translation/translator.ts";
import type { WalkConfig } from "./capabilities.ts";
import type { RegisterFile } from "./register-file.ts";
import type { WriteBufferAccess } from "../memory/write-buffer.ts";

const TE = Number(Gcmd.TE), SRTP = Number(Gcmd.SRTP), WBF = Number(Gcmd.WBF), QIE = Number(Gcmd.QIE);
const IRE = Number(Gcmd.IRE), SIRTP = Number(Gcmd.SIRTP), CFI = Number(Gcmd.CFI);
const TES = Number(Gsts.TES), RTPS = Number(Gsts.RTPS), QIES = Number(Gsts.QIES);
const IRES = Number(Gsts.IRES), IRTPS = Number(Gsts.IRTPS), CFIS = Number(Gsts.CFIS);
const NOT_LOGGING: [number, string][] = [
  [Number(Gcmd.SFL), "SFL (advanced fault logging not supported)"],
  [Number(Gcmd.EAFL), "EAFL (advanced fault logging not supported)"],
];
const NOT_REMAPPING: [number, string][] = [
  [IRE, "IRE (interrupt remapping not offered)"],
  [SIRTP, "SIRTP (interrupt remapping not offered)"],
  [CFI, "CFI (interrupt remapping not offered)"],
];

export class GlobalCommand {
  private readonly ignored: [number, string][];

  constructor(
    private readonly regs: RegisterFile,
    private readonly options: ResolvedOptions,
    private readonly cfg: WalkConfig,
    private readonly translator: Translator,
    private readonly invalidation: Invalidation,
    private readonly queue: InvalidationQueue,
    private readonly interrupts: InterruptRemapping,
    private readonly stats: DeviceStats,
    private readonly trace: Tracer,
    /** The write buffer (CAP.RWBF); undefined without one. */
    private readonly writeBuffer: WriteBufferAccess | undefined,
  ) {
    // Without interrupt remapping (ECAP.IR = 0) its three commands are ignored, as before it existed.
    this.ignored = options.interruptRemapping ? NOT_LOGGING : [...NOT_LOGGING, ...NOT_REMAPPING];
  }

  /** A written GCMD value. */
  write(command: number): void {
    const status = this.regs.get32(Reg.GSTS);
    const translator = this.translator;
    if ((command ^ status) & TE) {
      translator.enabled = (command & TE) !== 0;
      this.regs.update32(Reg.GSTS, translator.enabled ? TES : 0, translator.enabled ? 0 : TES);
      this.writeBuffer?.flush();
      this.invalidation.everything();
      this.traceCommand(translator.enabled ? "TE on" : "TE off");
    }
    if (command & SRTP) {
      translator.rootTable = this.cfg.entryMasks.address(this.regs.get32(Reg.RTADDR), this.regs.get32(Reg.RTADDR + 4));
      // TTM (bits 11:10): only 00, legacy mode, is supported by this unit (no ECAP.SMTS, no ECAP.ADMS).
      translator.rootTableModeValid = ((this.regs.get32(Reg.RTADDR) >>> 10) & 3) === 0;
      // TTM = 01 on a unit with ECAP.SMTS: scalable mode (scalable/scalable-translation.ts).
      translator.scalable?.latch((this.regs.get32(Reg.RTADDR) >>> 10) & 3);
      this.regs.update32(Reg.GSTS, RTPS, 0);
      this.writeBuffer?.flush();
      // CAP.ESRTPS = 1: SRTP also invalidates every DMA-remapping cache. 0 (QEMU 10.0): it only
      // latches the root; software invalidates the context cache and the IOTLB (VT-d §11.4.4).
      if (this.options.esrtps) this.invalidation.everything();
      this.traceCommand(this.options.esrtps ? "SRTP (caches invalidated: ESRTPS)" : "SRTP");
    }
    if (command & WBF) {
      if (this.options.rwbf) {
        // The write buffer is flushed at once: WBFS is set and cleared within the command.
        this.stats.writeBufferFlushes++;
        this.writeBuffer?.flush();
        this.traceCommand("WBF");
      } else {
        this.traceCommand("WBF ignored (CAP.RWBF = 0)");
      }
    }
    if ((command ^ status) & QIE) {
      if (command & QIE) this.queue.enable();
      else this.queue.disable();
      this.traceCommand(command & QIE ? "QIE on" : "QIE off");
    } else if (command & QIE) {
      // QIES is still 1 while an earlier QIE = 0 waits for the queue to go idle: set again, it stays on.
      this.queue.cancelDisable();
    }
    if (this.options.interruptRemapping) this.interruptCommands(command, status);
    for (const [bit, name] of this.ignored) {
      if (command & bit && this.trace.active) this.traceCommand(`${name}: ignored`);
    }
  }

  /**
   * SIRTP, IRE and CFI (VT-d §11.4.4). SIRTP latches IRTA and leaves the interrupt entry cache
   * alone (CAP.ESIRTPS = 0: software invalidates it globally after SIRTP). IRE is honoured with
   * queued invalidation off too, as QEMU does: ECAP.IR requires the unit to offer QI, and software
   * to enable it first (the entry cache can only be invalidated through the queue), but the spec
   * names no hardware reaction. CFIS follows CFI; it matters only while IRES = 1 (EIME is 0).
   */
  private interruptCommands(command: number, status: number): void {
    const interrupts = this.interrupts;
    if (command & SIRTP) {
      interrupts.latchTable(this.regs.get32(Reg.IRTA), this.regs.get32(Reg.IRTA + 4));
      this.regs.update32(Reg.GSTS, IRTPS, 0);
      this.traceCommand("SIRTP");
    }
    if ((command ^ status) & IRE) {
      interrupts.enabled = (command & IRE) !== 0;
      this.regs.update32(Reg.GSTS, interrupts.enabled ? IRES : 0, interrupts.enabled ? 0 : IRES);
      const queueOff = (this.regs.get32(Reg.GSTS) & QIES) === 0;
      this.traceCommand(interrupts.enabled ? (queueOff ? "IRE on (QIES = 0: the interrupt entry cache cannot be invalidated)" : "IRE on") : "IRE off");
    }
    if ((command ^ status) & CFI) {
      interrupts.compatibilityFormatPasses = (command & CFI) !== 0;
      this.regs.update32(Reg.GSTS, interrupts.compatibilityFormatPasses ? CFIS : 0, interrupts.compatibilityFormatPasses ? 0 : CFIS);
      this.traceCommand(interrupts.compatibilityFormatPasses ? "CFI on" : "CFI off");
    }
  }

  private traceCommand(command: string): void {
    if (this.trace.active) this.trace.emit({ type: "vtd_gcmd", command, status: this.regs.get32(Reg.GSTS) });
  }
}
