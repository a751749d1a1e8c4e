/**
 * The strict checker in scalable mode on hostile tables: random structures, then random bits
 * flipped in them between requests (so the caches go stale in every way), random requests with
 * and without PASID. The checker must never throw, never change what the unit does (the same
 * results and memory as a unit without it), and every report it makes must be complete.
 */
import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice, type DriverBugReport } from "../index.ts";
import { Gcmd, Reg } from "../../spec/registers.ts";
import { ScalableTables } from "../../../test/support/scalable-tables.ts";
import { mulberry32 as rng } from "../../../test/support/vfio-workload.ts";

const RAM = 0x80_0000;
const SIDS = [0x0018, 0x0090];

/** A unit on its own RAM with random scalable tables built from `seed`; the table pages returned. */
function unit(seed: number, cachingMode: boolean, reports?: DriverBugReport[], lineCopies = false) {
  const random = rng(seed);
  const ram = new GuestRam(RAM);
  const device = new VtdDevice({
    memory: ram, scalableMode: true, firstStage: true, secondStage: true, pasidBits: 4, cachingMode,
    // Table reads behind a write buffer and CPU caches the unit does not snoop (the checker's flush checks).
    ...(lineCopies ? { rwbf: true, cacheLineFlushes: true } : {}),
    ...(reports ? { checker: { onReport: (r: DriverBugReport) => reports.push(r) } } : {}),
  });
  const t = new ScalableTables(ram, 0x1000);
  for (const sid of SIDS) {
    const dir = t.smContext(sid, { pasidEnable: true, ridPasid: Math.floor(random() * 4) });
    for (let pasid = 0; pasid < 4; pasid++) {
      const pgtt = [1, 2, 2, 1, 4][Math.floor(random() * 5)]!;
      const fs = t.page();
      const ss = t.pasidEntry(dir, pasid, { pgtt, aw: 2, firstStageRoot: fs, did: 1 + Math.floor(random() * 3) });
      for (let k = 0; k < 8; k++) {
        const iova = Math.floor(random() * 32) * 4096;
        const output = 0x40_0000 + Math.floor(random() * 512) * 4096;
        if (pgtt === 2) t.map(ss, 4, iova, output, BigInt(1 + Math.floor(random() * 3)));
        if (pgtt === 1) t.mapFirstStage(fs, iova, output, 6n);
      }
    }
  }
  const tablesEnd = t.page();
  device.writeRegister(Reg.RTADDR, 8, BigInt(t.root) | (1n << 10n));
  device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
  device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
  return { device, ram, random, tablesEnd };
}

describe("hostile scalable tables with the checker on", () => {
  for (const [cachingMode, lineCopies] of [[false, false], [true, false], [true, true]] as const) {
    it(`CM = ${cachingMode}${lineCopies ? ", RWBF and unsnooped CPU caches" : ""}: no throw, the same outcomes and memory as without the checker, complete reports`, () => {
      let total = 0, flushes = 0;
      for (let seed = 1; seed <= 6; seed++) {
        const reports: DriverBugReport[] = [];
        const checked = unit(seed, cachingMode, reports, lineCopies);
        const plain = unit(seed, cachingMode, undefined, lineCopies);
        const random = rng(seed * 31);
        for (let i = 0; i < 400; i++) {
          if (random() < 0.15) {
            // Flip a random bit of a table qword (below the data pool) in both units' RAM.
            const at = 0x1000 + Math.floor(random() * ((checked.tablesEnd - 0x1000) / 8)) * 8;
            const flip = 1n << BigInt(Math.floor(random() * 64));
            for (const u of [checked, plain]) u.ram.write64(at, u.ram.read64(at) ^ flip);
          }
          const sid = SIDS[Math.floor(random() * SIDS.length)]!;
          const iova = Math.floor(random() * 40) * 4096 + Math.floor(random() * 4096);
          const options = random() < 0.5 ? { pasid: Math.floor(random() * 4) } : undefined;
          const write = random() < 0.4;
          const run = (u: typeof checked) => {
            const bytes = new Uint8Array(8).fill(i & 0xff);
            return write ? u.device.dmaWrite(sid, iova, bytes, options) : u.device.dmaRead(sid, iova, bytes, options);
          };
          expect(run(checked)).toEqual(run(plain));
        }
        expect(firstDifference(checked.ram.direct, plain.ram.direct)).toBe(-1);
        total += reports.length;
        flushes += reports.filter((r) => r.kind === "unflushed-table-write" || r.kind === "missing-write-buffer-flush").length;
        for (const r of reports) {
          expect(r.message).toMatch(/^driver bug \((stale-cache|missing-cm-invalidation|unflushed-table-write|missing-write-buffer-flush)\): /);
          expect(r.missing.text.length).toBeGreaterThan(10);
        }
      }
      expect(total).toBeGreaterThan(0); // the flips did make cached entries stale
      // Behind line copies the flips are stores the unit does not see yet: named as flushes.
      if (lineCopies) expect(flushes).toBeGreaterThan(0);
      else expect(flushes).toBe(0);
    });
  }
});

/** The first index where the two byte arrays differ, or -1 (a deep equality of 8 MiB is too slow). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
