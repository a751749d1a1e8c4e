/**
 * What a user sees: typed trace events, named like QEMU's `vtd_*` trace points.
 * Emitting costs one branch when nobody subscribes.
 */
import type { FaultReason } from "../spec/index.ts";

export type TraceEvent =
  | { type: "vtd_reg_read"; offset: number; size: number; value: bigint }
  | { type: "vtd_reg_write"; offset: number; size: number; value: bigint }
  | { type: "vtd_reg_ignored"; offset: number; size: number; value: bigint; why: string }
  | { type: "vtd_gcmd"; command: string; status: number }
  | { type: "vtd_inv"; cache: "context" | "iotlb" | "device-iotlb" | "iec"; granularity: string; source: "register" | "queue"; did?: number; sid?: number; fm?: number; address?: bigint; am?: number; ih?: boolean }
  | { type: "vtd_iq_desc"; head: number; lo: bigint; hi: bigint; kind: string }
  | { type: "vtd_iq_error"; error: "IQE" | "ITE" | "ICE"; head: number; why: string }
  | { type: "vtd_inv_wait"; statusWrite: boolean; interrupt: boolean; data: number; address: bigint }
  | { type: "vtd_fault"; sid: number; reason: FaultReason; address: bigint; write: boolean; recorded: boolean; why: string }
  | { type: "vtd_iotlb_miss"; sid: number; address: bigint }
  | { type: "vtd_context_miss"; sid: number }
  | { type: "vtd_interrupt"; source: "fault" | "completion"; address: bigint; data: number };

export type TraceListener = (event: TraceEvent) => void;

export class Tracer {
  private listeners: TraceListener[] = [];
  /** True while anyone listens; check it before building an event. */
  active = false;

  subscribe(listener: TraceListener): () => void {
    this.listeners.push(listener);
    this.active = true;
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
      this.active = this.listeners.length > 0;
    };
  }

  emit(event: TraceEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A user's listener must not break the unit.
      }
    }
  }
}
