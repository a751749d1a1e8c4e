/**
 * A device assigned to the guest (PCI pass-through): its DMA goes through the host IOMMU only,
 * never through the emulated unit, as real hardware behind VFIO does. Where the host IOMMU has
 * no mapping (or no permission) the access faults at the host, whatever the guest's tables say:
 * the shadow must be right, or the guest's device breaks.
 *
 * Results use the unit's DmaResult shape: a missing mapping or permission is reported like a
 * second-stage not-present entry (VT-d §7.1.3: 6 for a read, 5 for a write), a target outside
 * RAM as 0 (aborted). Faults are logged here (the host sees them, the guest does not).
 *
 * In scalable mode, while the guest's PASID entry for the device is first-stage, a nested hwpt is
 * attached (nested-hwpt.ts) and the device's requests go through it instead: the guest's
 * first-stage table, the host's IOTLB, its fault reasons.
 */
import { FaultReason } from "../spec/fault-reasons.ts";
import { DMA_ABORT, DMA_OK, dmaFailure, type DmaResult } from "../vtd-device/dma-result.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";
import { MemoryAccess } from "../vtd-device/memory/memory-access.ts";
import type { HostIommu } from "./host-iommu.ts";
import type { NestedHwpt } from "./nested-hwpt.ts";

export interface HostDmaFault {
  iova: number;
  write: boolean;
  reason: FaultReason;
}

const PAGE = 4096;
/** Host-side fault log entries kept (the oldest go first). */
const FAULT_LOG = 1024;

export class AssignedDevice {
  /** Host IOMMU faults, oldest first (at most FAULT_LOG). */
  readonly faults: HostDmaFault[] = [];
  faultCount = 0;
  /** Guest memory as the device's DMA reaches it (also what a nested hwpt walks). */
  readonly memory: MemoryAccess;
  /** Scalable mode: the nested hwpt, used while one is attached (set by the assignment). */
  nested: NestedHwpt | undefined = undefined;

  constructor(readonly sid: number, readonly hostIommu: HostIommu, memory: GuestMemory) {
    this.memory = new MemoryAccess(memory);
  }

  dmaRead(iova: number, into: Uint8Array): DmaResult {
    return this.transfer(iova, into, false);
  }

  dmaWrite(iova: number, data: Uint8Array): DmaResult {
    return this.transfer(iova, data, true);
  }

  /** Page by page through the host IOMMU; at a fault nothing beyond it moves. */
  private transfer(iova: number, bytes: Uint8Array, write: boolean): DmaResult {
    let done = 0;
    const nested = this.nested !== undefined && this.nested.attached ? this.nested : undefined;
    while (done < bytes.length) {
      const address = iova + done;
      let target: number;
      if (nested !== undefined) {
        const reason = nested.translate(address, write);
        if (reason !== 0) return this.fault(address, write, reason);
        target = nested.hostAddress;
      } else {
        const m = this.hostIommu.lookup(address);
        if (!m || (m.permission & (write ? 2 : 1)) === 0) return this.fault(address, write, write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted);
        target = m.hostAddress + (address - m.iova);
      }
      const chunk = Math.min(bytes.length - done, PAGE - (address % PAGE));
      const ok = write ? this.memory.writeFrom(target, bytes, done, chunk) : this.memory.readInto(target, bytes, done, chunk);
      if (!ok) return dmaFailure(DMA_ABORT);
      done += chunk;
    }
    return DMA_OK;
  }

  private fault(iova: number, write: boolean, reason: FaultReason): DmaResult {
    this.faultCount++;
    this.faults.push({ iova, write, reason });
    if (this.faults.length > FAULT_LOG) this.faults.shift();
    return dmaFailure(reason);
  }
}
