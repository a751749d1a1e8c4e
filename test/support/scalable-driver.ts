/**
 * The guest driver in scalable mode on the in-process machine, with every invalidation descriptor
 * it writes recorded (the driver's test-only descriptor hook, which sees each descriptor before
 * the queue): decoded with src/spec's layouts into one line each, so tests can assert what was
 * issued and in which order. Waits are not recorded (the driver appends one to every batch).
 */
import type { VtdOptions } from "../../src/vtd-device/options.ts";
import type { DriverCreateOptions } from "../../src/guest-driver/driver.ts";
import { ContextCacheDesc, DescriptorType, DeviceTlbDesc, IotlbDesc } from "../../src/spec/descriptors.ts";
import { getField } from "../../src/spec/field.ts";
import { PasidCacheDesc, PasidIotlbDesc, PasidIotlbGranularity, ScalableDescriptorType } from "../../src/spec/scalable.ts";
import { Granularity } from "../../src/spec/registers.ts";
import { testMachine, type TestMachine } from "./driver-scenarios.ts";

/** One descriptor as text: "pasid-iotlb-page did 1 pasid 0 addr 0x1000 am 0", "iotlb-domain did 1", ... */
export function describeDescriptor(lo: bigint, hi: bigint): string {
  const type = Number((lo & 0xfn) | (((lo >> 9n) & 7n) << 4n));
  const n = (value: bigint) => Number(value);
  switch (type) {
    case DescriptorType.ContextCache: {
      const g = n(getField(lo, ContextCacheDesc.G));
      const did = n(getField(lo, ContextCacheDesc.DID));
      if (g === Granularity.Global) return "context-global";
      if (g === Granularity.Domain) return `context-domain did ${did}`;
      return `context-device sid 0x${n(getField(lo, ContextCacheDesc.SID)).toString(16)} did ${did}`;
    }
    case DescriptorType.Iotlb: {
      const g = n(getField(lo, IotlbDesc.G));
      const did = n(getField(lo, IotlbDesc.DID));
      if (g === Granularity.Global) return "iotlb-global";
      if (g === Granularity.Domain) return `iotlb-domain did ${did}`;
      return `iotlb-page did ${did} addr 0x${(hi & IotlbDesc.ADDR).toString(16)} am ${n(getField(hi, IotlbDesc.AM))}`;
    }
    case DescriptorType.DeviceTlb: return `device-tlb sid 0x${n(getField(lo, DeviceTlbDesc.SID)).toString(16)}`;
    case ScalableDescriptorType.PasidCache:
      return `pasid-cache g ${n(getField(lo, PasidCacheDesc.G))} did ${n(getField(lo, PasidCacheDesc.DID))} pasid ${n(getField(lo, PasidCacheDesc.PASID))}`;
    case ScalableDescriptorType.PasidIotlb: {
      const did = n(getField(lo, PasidIotlbDesc.DID)), pasid = n(getField(lo, PasidIotlbDesc.PASID));
      if (n(getField(lo, PasidIotlbDesc.G)) === PasidIotlbGranularity.Pasid) return `pasid-iotlb did ${did} pasid ${pasid}`;
      return `pasid-iotlb-page did ${did} pasid ${pasid} addr 0x${(hi & PasidIotlbDesc.ADDR).toString(16)} am ${n(getField(hi, PasidIotlbDesc.AM))}`;
    }
    default: return `type ${type}`;
  }
}

/** Every configuration the scalable-mode driver tests run: each stage, CM 0 and 1, strict and lazy unmaps (8). */
export const SCALABLE_DRIVER_CASES = (["first", "second"] as const).flatMap((stage) =>
  [false, true].flatMap((cm) => (["strict", "lazy"] as const).map((mode) => ({ stage, cm, mode }))));

export type ScalableMachine = TestMachine & {
  /** Every invalidation descriptor the driver wrote, in order (see describeDescriptor). */
  issued: string[];
};

/** A unit offering scalable mode (both stages unless `vtd` says otherwise) and a started driver asking for it. */
export function scalableMachine(vtd: Omit<VtdOptions, "memory" | "onInterrupt"> = {}, driver: DriverCreateOptions = {}): ScalableMachine {
  const issued: string[] = [];
  const m = testMachine({ scalableMode: true, firstStage: true, secondStage: true, ...vtd }, {
    scalableMode: true,
    ...driver,
    testOnly: {
      ...driver.testOnly,
      mangleDescriptor: (lo, hi) => {
        issued.push(describeDescriptor(lo, hi));
        return [lo, hi];
      },
    },
  });
  return { ...m, issued };
}
