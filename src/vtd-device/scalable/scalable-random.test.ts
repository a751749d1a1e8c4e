/**
 * Random scalable-mode tables: plausible structures (random PASIDE, RID_PASID, PDTS, PGTT incl.
 * nested and reserved but not pass-through, AW, SRE, WPE, NXE, FPD, permissions, U/S, 4 KiB and 2 MiB leaves into a
 * pool of data pages), then up to 24 random control bits flipped anywhere in the tables (P, FPD,
 * PGTT, AW, reserved bits, PS, XD...; address fields kept, so valid mappings end in the data pool). Random requests (with and
 * without PASID, privileged or not, any address) must never throw, must return, and a DMA write
 * must change no byte outside the data pool except the Accessed/Dirty flags of first-stage entries.
 */
import { describe, expect, it } from "vitest";
import { GuestRam, VtdDevice } from "../index.ts";
import { Gcmd, Reg } from "../../spec/registers.ts";
import { ScalableTables } from "../../../test/support/scalable-tables.ts";
import { mulberry32 as rng } from "../../../test/support/vfio-workload.ts";

/** Table pages from here up to the data pool. */
const TABLES = 0x1000;
/** Data pages: a 2 MiB-aligned region of 4 MiB. */
const DATA = 0x20_0000;
const DATA_SIZE = 4 << 20;
/** RAM ends with the data pool: a transfer beyond it aborts. */
const RAM = DATA + DATA_SIZE;
const SIDS = [0x0018, 0x0090, 0x0198];

function build(seed: number, options: { firstStage?: boolean; secondStage?: boolean; cachingMode?: boolean }): { device: VtdDevice; ram: GuestRam; random: () => number; mapped: number[] } {
  const random = rng(seed);
  const mapped: number[] = [];
  const ram = new GuestRam(RAM);
  const device = new VtdDevice({ memory: ram, scalableMode: true, pasidBits: 8, ...options });
  const t = new ScalableTables(ram, TABLES);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const dataFrame = (align: number) => DATA + Math.floor(random() * (DATA_SIZE / align)) * align;
  // A plausible structure per requester: PASIDs 0..7 with random PGTT, AW, flags and mappings.
  for (const sid of SIDS) {
    const dir = t.smContext(sid, { pasidEnable: random() < 0.8, ridPasid: Math.floor(random() * 8), fpd: random() < 0.1, pdts: pick([0, 1]) });
    for (let pasid = 0; pasid < 8; pasid++) {
      // Pass-through (4) is left out: it maps all of RAM, tables included, so it has no data pool to stay in.
      const pgtt = pick(options.firstStage ? [1, 1, 2, 3, 0, 5] : [2, 2, 1, 3, 0, 7]);
      const fs = t.page();
      const aw = pick([1, 2, 2, 3]);
      const ss = t.pasidEntry(dir, pasid, { pgtt, aw, firstStageRoot: fs, sre: random() < 0.5, wpe: random() < 0.5, nxe: random() < 0.5, fpd: random() < 0.1 });
      for (let k = 0; k < 6; k++) {
        const iova = Math.floor(random() * 64) * 0x20_0000 + Math.floor(random() * 512) * 4096;
        mapped.push(iova);
        const leafLevel = pick([1, 1, 1, 2]);
        const output = dataFrame(leafLevel === 2 ? 0x20_0000 : 4096);
        if (pgtt === 2 && aw < 3) t.map(ss, aw + 2, iova, output, BigInt(1 + Math.floor(random() * 3)), leafLevel);
        if (pgtt === 1) t.mapFirstStage(fs, iova, output, BigInt(Math.floor(random() * 8)) & 6n, leafLevel, random() < 0.9 ? 7n : 3n);
      }
    }
  }
  // Then damage: flip random bits of random qwords of the table pool (reserved bits, P, addresses, PS, XD...).
  const used = t.page() - TABLES;
  for (let flips = Math.floor(random() * 24); flips > 0; flips--) {
    const at = TABLES + Math.floor(random() * (used / 8)) * 8;
    // Control bits only (11:0 and 63:52): address fields stay as built, so every valid mapping leads into the data pool.
    const bit = BigInt(random() < 0.6 ? Math.floor(random() * 12) : 52 + Math.floor(random() * 12));
    ram.write64(at, ram.read64(at) ^ (1n << bit));
  }
  device.writeRegister(Reg.RTADDR, 8, BigInt(t.root) | (1n << 10n));
  device.writeRegister(Reg.GCMD, 4, Gcmd.SRTP);
  device.writeRegister(Reg.GCMD, 4, Gcmd.TE);
  return { device, ram, random, mapped };
}

describe("random scalable-mode tables and requests", () => {
  for (const [label, options] of [["second stage", {}], ["first and second stage", { firstStage: true, secondStage: true }], ["first stage, CM", { firstStage: true, cachingMode: true }], ["both stages, CM (negative entries)", { firstStage: true, secondStage: true, cachingMode: true }]] as const) {
    it(`${label}: 20 seeds × 200 requests never throw, and writes touch only data pages and A/D flags`, () => {
      let succeeded = 0, faulted = 0;
      for (let seed = 1; seed <= 20; seed++) {
        const { device, ram, random, mapped } = build(seed * 7919, options);
        for (let n = 0; n < 200; n++) {
          const sid = SIDS[Math.floor(random() * SIDS.length)]!;
          const r = random();
          const iova = r < 0.6 ? mapped[Math.floor(random() * mapped.length)]! + Math.floor(random() * 4096) : r < 0.7 ? Math.floor(random() * 2 ** 31) : r < 0.9 ? Math.floor(random() * 2 ** 48) : Math.floor(random() * 2 ** 53);
          const options = random() < 0.5 ? undefined : { pasid: Math.floor(random() * (random() < 0.8 ? 8 : 256)), privileged: random() < 0.3 };
          const length = 1 + Math.floor(random() * (random() < 0.8 ? 64 : 9000));
          const before = ram.direct.slice(0, DATA);
          // Now and then a control bit flips under the caches (a stale entry may still serve: it points into the pool too).
          if (random() < 0.05) {
            const at = TABLES + Math.floor(random() * ((DATA - TABLES) / 8)) * 8;
            const entry = ram.read64(at);
            if (entry !== 0n) ram.write64(at, entry ^ (1n << BigInt(Math.floor(random() * 12))));
            before.set(ram.direct.subarray(at, at + 8), at);
          }
          const result = random() < 0.5
            ? device.dmaWrite(sid, iova, new Uint8Array(length).fill(0xa5), options)
            : device.dmaRead(sid, iova, new Uint8Array(length), options);
          if (result.ok) succeeded++;
          else faulted++;
          // Outside the data pool only first-stage A/D flags (bits 5 and 6 of an entry's low byte) may change.
          if (Buffer.from(before.buffer).equals(ram.direct.subarray(0, DATA))) continue;
          for (let i = 0; i < DATA; i++) {
            if (ram.direct[i] !== before[i]) {
              expect(i >= TABLES && i % 8 === 0, `byte 0x${i.toString(16)} changed (seed ${seed})`).toBe(true);
              expect((ram.direct[i]! ^ before[i]!) & ~0x60).toBe(0);
            }
          }
        }
      }
      // The tables are random but not hopeless: both outcomes occur.
      expect(succeeded).toBeGreaterThan(0);
      expect(faulted).toBeGreaterThan(0);
    });
  }
});
