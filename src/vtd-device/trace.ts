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
  | { type: "vtd_inv"; cache: "context" | "iotlb" | "device-iotlb"; granularity: string; source: "register" | "queue"; did?: number; sid?: number; fm?: number; address?: bigint; am?: number; ih?: boolean }
  | { type: "vtd_iq_desc"; head: number; lo: bigint; hi: bigint; kind: string }
  | { type: "vtd_iq_error"; error: "IQE" | "ITE" | "ICE"; head: number; why: string }
  | { type: "vtd_inv_wait"; statusWrite: boolean; interrupt: boolean; data: number; address: bigint }
  | { type: "vtd_fault"; sid: number; reason: FaultReason; address: bigint; write: boolean; recorded: boolean; why: string }
  | { type: "vtd_iotlb_miss"; sid: number; address: bigint }
  | { type: "vtd_context_miss"; sid: number }
  | { type: "vtd_interrupt"; source: "fault" | "completion"; address: bigint; data: number }
  /**
   * An interrupt request let through: remapped by an IRTE (`index`), a compatibility-format one
   * passed with CFIS = 1, or any while interrupt remapping is off (GSTS.IRES = 0); `index` -1 when
   * no IRTE was used.
   */
  | { type: "vtd_ir_remap"; sid: number; index: number; how: "remapped" | "compatibility" | "not enabled"; address: bigint; data: number; remappedAddress: bigint; remappedData: number }
  /** An interrupt request blocked with an interrupt-remapping fault (`index` -1 when none was computed). */
  | { type: "vtd_ir_fault"; sid: number; index: number; reason: FaultReason; address: bigint; data: number; recorded: boolean }
  /** An interrupt-entry-cache invalidation descriptor: global, or 2^mask entries from `index`. */
  | { type: "vtd_inv_iec"; granularity: "global" | "index"; index: number; mask: number; dropped: number }
  /**
   * A scalable-mode PASID-cache (granularity domain, pasid or global) or PASID-based IOTLB (pasid or
   * page: 2^am pages from `address`, `ih` the invalidation hint) descriptor, from the queue.
   */
  | { type: "vtd_inv_pasid"; cache: "pasid-cache" | "pasid-iotlb"; granularity: "domain" | "pasid" | "global" | "page"; did: number; pasid: number; address?: bigint; am?: number; ih?: boolean };

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
