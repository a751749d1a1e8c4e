/**
 * Saving and restoring a unit (format: snapshot.ts). Each room saves and checks its own state;
 * this file puts the sections together, checks what no single room can (registers against the
 * latched state, the checksum), and commits. A restore decodes everything into fresh objects
 * first and changes the unit only once all of it is known good: the commit is plain copies and
 * assignments that cannot throw, so a refused snapshot leaves the unit exactly as it was.
 */
import { getField } from "../../spec/field.ts";
import { Ecap, Gsts, Iqa, Reg } from "../../spec/registers.ts";
import type { ContextCache, ContextCacheLoad } from "../caches/context-cache.ts";
import type { DeviceTlbs, DeviceTlbsLoad } from "../caches/device-tlb.ts";
import type { InterruptEntryCacheLoad } from "../caches/interrupt-entry-cache.ts";
import type { Iotlb, IotlbLoad } from "../caches/iotlb.ts";
import type { FaultRecording } from "../faults/fault-recording.ts";
import type { InterruptRemapping, InterruptRemappingState } from "../interrupts/interrupt-remapping.ts";
import type { InvalidationQueue, InvalidationQueueState } from "../invalidation/invalidation-queue.ts";
import type { ResolvedOptions } from "../options.ts";
import type { RegisterFile } from "../registers/register-file.ts";
import { DeviceStats, type UnitCounters } from "../stats.ts";
import { decodeCounters, loadCounters, saveCounters, type CountersState } from "./counters-state.ts";
import type { Translator, TranslatorState } from "../translation/translator.ts";
import { walkConfig } from "../registers/capabilities.ts";
import { checkCachedAddresses } from "./cached-addresses.ts";
import { crc32, describe, hexOf, isRecord, Section, SnapshotError } from "./codec.ts";
import { checkHeader, configurationOf, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, type VtdSnapshot } from "./snapshot.ts";

/** The rooms a snapshot covers (given by the device; their state is private to it). */
export interface UnitParts {
  readonly options: ResolvedOptions;
  readonly regs: RegisterFile;
  readonly translator: Translator;
  readonly contextCache: ContextCache;
  readonly iotlb: Iotlb;
  readonly deviceTlbs: DeviceTlbs;
  readonly interrupts: InterruptRemapping;
  readonly faults: FaultRecording;
  readonly queue: InvalidationQueue;
  readonly stats: DeviceStats;
  readonly counters: UnitCounters;
}

/** A snapshot checked in full, ready to commit. */
interface Decoded {
  registers: Uint8Array;
  translation: TranslatorState;
  contextCache: ContextCacheLoad;
  iotlb: IotlbLoad;
  deviceTlbs: DeviceTlbsLoad;
  interruptEntryCache: InterruptEntryCacheLoad;
  interruptRemapping: InterruptRemappingState;
  faults: { next: number };
  queue: InvalidationQueueState;
  stats: Record<string, unknown>;
  counters: CountersState;
}

export function saveUnit(p: UnitParts): VtdSnapshot {
  const body: Omit<VtdSnapshot, "checksum"> = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    configuration: configurationOf(p.options, p.interrupts.cache.capacity),
    registers: { bytes: hexOf(p.regs.saveBytes()) },
    translation: p.translator.save(),
    contextCache: p.contextCache.save(),
    iotlb: p.iotlb.save(),
    deviceTlbs: { slots: p.deviceTlbs.save() },
    interruptEntryCache: p.interrupts.cache.save(),
    interruptRemapping: p.interrupts.save(),
    faults: p.faults.save(),
    queue: p.queue.save(),
    stats: copyStats(p.stats as unknown as Record<string, unknown>),
    counters: saveCounters(p.counters),
  };
  return { ...body, checksum: crc32(JSON.stringify(body)) };
}

/** Checks `input` (a snapshot or its JSON text) in full; throws SnapshotError naming the problem. Touches nothing. */
export function decodeUnit(p: UnitParts, input: unknown): Decoded {
  const snapshot = checkHeader(input, configurationOf(p.options, p.interrupts.cache.capacity));
  const deviceTlbs = Section.of(snapshot, "deviceTlbs");
  const decoded: Decoded = {
    registers: Section.of(snapshot, "registers").hex("bytes", p.regs.size),
    translation: p.translator.decode(Section.of(snapshot, "translation")),
    contextCache: p.contextCache.decode(Section.of(snapshot, "contextCache")),
    iotlb: p.iotlb.decode(Section.of(snapshot, "iotlb")),
    deviceTlbs: deviceTlbs.raw("slots") === null ? null : p.deviceTlbs.decode(deviceTlbs.section("slots"), deviceTlbs.raw("slots")),
    interruptEntryCache: p.interrupts.cache.decode(Section.of(snapshot, "interruptEntryCache")),
    interruptRemapping: p.interrupts.decode(Section.of(snapshot, "interruptRemapping")),
    faults: p.faults.decode(Section.of(snapshot, "faults")),
    queue: p.queue.decode(Section.of(snapshot, "queue")),
    stats: decodeStats(Section.of(snapshot, "stats")),
    counters: decodeCounters(Section.of(snapshot, "counters")),
  };
  checkRegisters(p.regs, decoded);
  const cfg = walkConfig(p.options);
  checkCachedAddresses(cfg, decoded.contextCache, decoded.iotlb, decoded.deviceTlbs);
  const root = decoded.translation.rootTable;
  if (!(Number.isInteger(root) && root >= 0 && root < 2 ** cfg.awBits && root % 4096 === 0)) {
    throw new SnapshotError(`snapshot section translation: rootTable ${describe(root)} is no 4 KiB-aligned address below 2^${cfg.awBits}`);
  }
  const { checksum, ...body } = snapshot;
  const actual = crc32(JSON.stringify(body));
  if (checksum !== actual) {
    throw new SnapshotError(`snapshot checksum ${describe(checksum)} does not match its content (${actual}): the snapshot is damaged`);
  }
  return decoded;
}

/** Makes the unit's state the decoded snapshot's. Plain copies and assignments only. */
export function commitUnit(p: UnitParts, d: Decoded): void {
  p.regs.loadBytes(d.registers);
  p.translator.load(d.translation);
  p.contextCache.load(d.contextCache);
  p.iotlb.load(d.iotlb);
  p.deviceTlbs.load(d.deviceTlbs);
  p.interrupts.cache.load(d.interruptEntryCache);
  p.interrupts.load(d.interruptRemapping);
  p.faults.load(d.faults);
  p.queue.load(d.queue);
  Object.assign(p.stats, d.stats);
  loadCounters(p.counters, d.counters);
}

/** What the registers say must agree with what the unit latched (a damaged byte shows here). */
function checkRegisters(regs: RegisterFile, d: Decoded): void {
  const bytes = d.registers;
  const dword = (offset: number) => (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
  const fail = (what: string): never => {
    throw new SnapshotError(`snapshot section registers: ${what}`);
  };
  for (const [name, offset] of [["VER", Reg.VER], ["CAP", Reg.CAP], ["CAP", Reg.CAP + 4], ["ECAP", Reg.ECAP], ["ECAP", Reg.ECAP + 4]] as const) {
    const own = regs.reset32(offset);
    if (dword(offset) !== own) fail(`${name} dword at 0x${offset.toString(16)} is 0x${dword(offset).toString(16)}, not this unit's 0x${own.toString(16)}`);
  }
  const gsts = dword(Reg.GSTS);
  const agree = (bit: bigint, name: string, latched: boolean, what: string) => {
    if (((gsts & Number(bit)) !== 0) !== latched) fail(`GSTS.${name} is ${latched ? 0 : 1} but ${what} is ${latched}`);
  };
  agree(Gsts.TES, "TES", d.translation.enabled, "translation.enabled");
  agree(Gsts.IRES, "IRES", d.interruptRemapping.enabled, "interruptRemapping.enabled");
  agree(Gsts.CFIS, "CFIS", d.interruptRemapping.compatibilityFormatPasses, "interruptRemapping.compatibilityFormatPasses");
  // QH counts 128-bit descriptors, or 256-bit ones with IQA.DW = 1 on a unit offering scalable mode (VT-d §11.4.9.1).
  const ecap = (BigInt(regs.reset32(Reg.ECAP + 4)) << 32n) | BigInt(regs.reset32(Reg.ECAP));
  const wide = getField(BigInt(dword(Reg.IQA)), Iqa.DW) === 1n && getField(ecap, Ecap.SMTS) === 1n;
  const shift = wide ? 5 : 4;
  if (dword(Reg.IQH) !== d.queue.head * 2 ** shift || dword(Reg.IQH + 4) !== 0) fail(`IQH 0x${dword(Reg.IQH).toString(16)} is not queue.head ${d.queue.head} << ${shift}`);
}

/** A deep copy of the counters (numbers, and objects of numbers). */
function copyStats(stats: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(stats)) out[key] = isRecord(value) ? { ...value } : value;
  return out;
}

/** Every counter DeviceStats has, a whole number ≥ 0; fresh objects. */
function decodeStats(s: Section): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, template] of Object.entries(new DeviceStats())) {
    if (isRecord(template)) {
      const inner = s.section(key);
      const copy: Record<string, number> = {};
      for (const name of Object.keys(template)) copy[name] = inner.int(name, 0, Number.MAX_SAFE_INTEGER);
      out[key] = copy;
    } else {
      out[key] = s.int(key, 0, Number.MAX_SAFE_INTEGER);
    }
  }
  return out;
}
