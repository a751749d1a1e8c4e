/** Helpers for the driver's tests and benchmark: an in-process machine with a started driver. */
import type { VtdOptions } from "../vtd-device/options.ts";
import { VtdDriver, type DriverCreateOptions } from "./driver.ts";
import { InProcessPlatform, type InProcessOptions } from "./in-process-platform.ts";

/** 00:04.0 and 00:05.0: the requester ids the tests' devices use. */
export const SID_A = 0x20;
export const SID_B = 0x28;

export interface TestMachine {
  platform: InProcessPlatform;
  driver: VtdDriver;
}

export function testMachine(
  vtd: Omit<VtdOptions, "memory" | "onInterrupt"> = {},
  driverOptions: DriverCreateOptions = {},
  platformOptions: Omit<InProcessOptions, "vtd"> = {},
): TestMachine {
  const platform = new InProcessPlatform({ deviceScopes: [{ bus: 0, dev: 4, fn: 0 }, { bus: 0, dev: 5, fn: 0 }], ...platformOptions, vtd });
  const driver = VtdDriver.start(platform, driverOptions);
  return { platform, driver };
}

/** A device reads `length` bytes at `iova`: the bytes, or the fault reason. */
export function deviceRead(platform: InProcessPlatform, sid: number, iova: number, length = 4): { ok: true; bytes: Uint8Array } | { ok: false; reason: number } {
  const bytes = new Uint8Array(length);
  const result = platform.device.dmaRead(sid, iova, bytes);
  return result.ok ? { ok: true, bytes } : { ok: false, reason: result.reason };
}

export function deviceWrite(platform: InProcessPlatform, sid: number, iova: number, data: Uint8Array): { ok: boolean; reason?: number } {
  const result = platform.device.dmaWrite(sid, iova, data);
  return result.ok ? { ok: true } : { ok: false, reason: result.reason };
}

/** Fills guest RAM at `phys` with a recognisable 32-bit tag (straight into RAM: data, not tables). */
export function tag(platform: InProcessPlatform, phys: number, value: number): void {
  platform.ram.write32(phys, value >>> 0);
}

export function readTag(bytes: Uint8Array): number {
  return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
}

/** CPU-cache lines of table pages the unit cannot see yet (ECAP.C = 0): empty when the driver kept the rule. */
export function unflushedTableLines(m: TestMachine): number[] {
  const pages = new Set(m.driver.tablePages());
  return m.platform.cache.dirtyLines().filter((line) => pages.has(line - (line % 4096)));
}
