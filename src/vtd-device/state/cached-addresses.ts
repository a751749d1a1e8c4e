/**
 * What no room can check alone in a snapshot: that every cached address is one the unit could
 * have cached with this configuration (integer, aligned, below 2^HAW), and that each context
 * entry's derived limits follow from its fields. The limits are rebuilt rather than trusted, so a
 * snapshot cannot widen what a cached context entry lets through.
 */
import { LEVEL_SIZE, TranslationType } from "../../spec/entries.ts";
import type { ContextCacheLoad } from "../caches/context-cache.ts";
import type { DeviceTlbsLoad } from "../caches/device-tlb.ts";
import type { IotlbLoad } from "../caches/iotlb.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { SnapshotError } from "./codec.ts";

function isAddress(value: number, alignment: number, awBits: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < 2 ** awBits && value % alignment === 0;
}

/** Checks the cached addresses and rebuilds the context entries' input limits; throws SnapshotError. */
export function checkCachedAddresses(cfg: WalkConfig, contextCache: ContextCacheLoad, iotlb: IotlbLoad, deviceTlbs: DeviceTlbsLoad): void {
  const cc = contextCache;
  for (let i = 0; i < cc.tag.length; i++) {
    if (cc.tag[i] === 0) continue;
    const where = `snapshot section contextCache: slot ${i}`;
    const tt = cc.translationType[i]!;
    if (cc.reason[i] === 0) {
      if (!isAddress(cc.tableRoot[i]!, 4096, cfg.awBits)) throw new SnapshotError(`${where}: table root ${cc.tableRoot[i]} is no 4 KiB-aligned address below 2^${cfg.awBits}`);
      if (((cfg.sagaw >>> cc.aw[i]!) & 1) === 0) throw new SnapshotError(`${where}: AW ${cc.aw[i]} is not supported by this unit`);
      const supported = tt === TranslationType.Untranslated || (tt === TranslationType.PassThrough && cfg.passThrough) || (tt === TranslationType.DeviceTlb && cfg.deviceIotlb);
      if (!supported) throw new SnapshotError(`${where}: translation type ${tt} is not supported by this unit`);
    } else if (cc.did[i] !== 0) {
      throw new SnapshotError(`${where}: a negative entry is tagged with domain 0, not ${cc.did[i]}`);
    }
    const limit = 2 ** (tt === TranslationType.PassThrough ? cfg.awBits : Math.min(cfg.awBits, 30 + 9 * cc.aw[i]!));
    cc.inputLimit[i] = limit;
    cc.fastInputLimit[i] = cc.reason[i] === 0 && tt === TranslationType.Untranslated ? limit : 0;
  }
  const e = iotlb.entries;
  for (let at = 0; at < e.length; at += 4) {
    const key = e[at]!;
    if (key === 0) continue;
    const output = e[at + 2]!;
    if (!isAddress(output, LEVEL_SIZE[key % 4]!, cfg.awBits)) {
      throw new SnapshotError(`snapshot section iotlb: entries[${at + 2}]: output ${output} is no address of a level-${key % 4} page below 2^${cfg.awBits}`);
    }
  }
  if (deviceTlbs === null) return;
  for (let i = 0; i < deviceTlbs.owner.length; i++) {
    if (deviceTlbs.owner[i] === 0) continue;
    const output = deviceTlbs.output[i]!;
    if (!isAddress(output, 4096, cfg.awBits)) throw new SnapshotError(`snapshot section deviceTlbs: output[${i}]: ${output} is no 4 KiB page below 2^${cfg.awBits}`);
  }
}
