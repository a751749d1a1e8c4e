/**
 * A fuzz program: the unit's configuration and a list of self-contained steps (every address and
 * value written out, so delta debugging can drop any step). Plain JSON: bigints, NaN and the
 * infinities are strings ("0x10n", "-3n", "NaN", "Infinity", "-Infinity").
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** A number or bigint as JSON. */
export type J = number | string;

export interface Config {
  awBits: 39 | 48;
  cachingMode: boolean;
  /** Only with cachingMode; false behaves like QEMU (nothing negative cached). */
  negativeCaching: boolean;
  checker: boolean;
  /** Guest RAM in bytes (a multiple of 16). */
  ram: number;
  faultRecords: number;
  iotlbEntries: number;
  contextCacheEntries: number;
  passThrough: boolean;
  queueDescriptorTimeMs: number;
  /** onInterrupt throws (the unit must not let it escape). */
  throwingInterrupt: boolean;
  /** A trace listener is subscribed (the trace events' code runs). */
  trace?: boolean;
}

export type Step =
  /** unit.writeRegister(off, size, value) */
  | { op: "w"; off: J; size: J; value: J }
  /** unit.readRegister(off, size) */
  | { op: "r"; off: J; size: J }
  /** The guest CPU zeroes [addr, addr + len). */
  | { op: "mz"; addr: number; len: number }
  /** The guest CPU stores 64-bit little-endian values from addr on (any alignment). */
  | { op: "mq"; addr: number; vals: string[] }
  /** unit.dmaRead / dmaWrite; `tag` seeds the data written and the read buffer's fill. */
  | { op: "dma"; sid: J; iova: J; len: number; write: boolean; tag: number }
  /** unit.advanceTime(ms) */
  | { op: "time"; ms: J }
  /** assignDevice(unit, sid): a VFIO shadow of sid. */
  | { op: "assign"; sid: number }
  /** A raw notifier on sid's address space (it may throw when told of an event). */
  | { op: "notify"; sid: number; events: number; start: J; end: J; throws: boolean }
  /** DMA by the assigned device of sid, through the shadow only. */
  | { op: "vdma"; sid: number; iova: number; len: number; write: boolean; tag: number }
  /** unit.reset() */
  | { op: "reset" };

export interface Program {
  config: Config;
  steps: Step[];
}

export function enc(v: number | bigint): J {
  if (typeof v === "bigint") return (v < 0n ? "-0x" + (-v).toString(16) : "0x" + v.toString(16)) + "n";
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  return v;
}

export function dec(j: J): number | bigint {
  if (typeof j === "number") return j;
  if (j === "NaN") return NaN;
  if (j === "Infinity") return Infinity;
  if (j === "-Infinity") return -Infinity;
  if (j.endsWith("n")) {
    const neg = j.startsWith("-");
    const v = BigInt(neg ? j.slice(1, -1) : j.slice(0, -1));
    return neg ? -v : v;
  }
  throw new Error(`fuzz program: bad value ${JSON.stringify(j)}`);
}

export function decBig(j: J): bigint {
  const v = dec(j);
  return typeof v === "bigint" ? v : BigInt(v);
}

export function hex64(v: bigint): string {
  return "0x" + BigInt.asUintN(64, v).toString(16);
}

/** splitmix32: a small deterministic PRNG. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed | 0;
  }
  u32(): number {
    let z = (this.s = (this.s + 0x9e3779b9) | 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** 0 <= result < n */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  big64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  /** Index into `weights` with probability proportional to the weight. */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let x = (this.u32() / 4294967296) * total;
    for (let i = 0; i < weights.length; i++) {
      x -= weights[i]!;
      if (x < 0) return i;
    }
    return weights.length - 1;
  }
}

/** Mixes a run seed and a program index into a program seed. */
export function programSeed(seed: number, index: number): number {
  let h = Math.imul((seed | 0) ^ 0x5bd1e995, 0x27d4eb2d) ^ Math.imul(index + 1, 0x165667b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  return (h ^ (h >>> 13)) | 0;
}

const pools = new Map<number, Uint8Array>();
const POOL = 1 << 20;

/**
 * Deterministic bytes for a DMA's data or a read buffer's fill: a slice, chosen by `tag`, of a
 * random pool per `salt` (pools of different salts never share a slice).
 */
export function dataBytes(tag: number, salt: number, length: number): Uint8Array {
  if (length > POOL / 2) return patternBytes(tag, salt, length);
  let pool = pools.get(salt);
  if (!pool) pools.set(salt, (pool = patternBytes(0x9001 + salt, salt, POOL)));
  const at = (tag >>> 0) % (POOL - length + 1);
  return pool.slice(at, at + length);
}

/** Deterministic random bytes. */
export function patternBytes(tag: number, salt: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const r = new Rng(Math.imul(tag, 0x2545f491) ^ salt);
  for (let i = 0; i < length; i += 4) {
    const v = r.u32();
    out[i] = v;
    if (i + 1 < length) out[i + 1] = v >>> 8;
    if (i + 2 < length) out[i + 2] = v >>> 16;
    if (i + 3 < length) out[i + 3] = v >>> 24;
  }
  return out;
}

/** Programs in a file or a directory of them: a Program, or { program, ... } as `--save` writes. */
export function loadPrograms(path: string): { name: string; program: Program }[] {
  const files = statSync(path).isDirectory() ? readdirSync(path).filter((f) => f.endsWith(".json")).sort().map((f) => join(path, f)) : [path];
  return files.map((file) => {
    const data = JSON.parse(readFileSync(file, "utf8")) as { program?: Program } & Program;
    return { name: file, program: data.program ?? data };
  });
}
