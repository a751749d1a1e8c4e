/**
 * Seeded random IRTEs and interrupt writes against an independent checker written from the spec
 * (VT-d §5.1.2, §5.1.4.1, §9.10) with bigint arithmetic, sharing no code with irte.ts. The unit
 * must never throw, and never deliver an interrupt the table does not allow:
 *   - a correct guest (every IRTE change followed by an IEC invalidation covering it) gets
 *     exactly the checker's answer, fault reason included;
 *   - a sloppy guest (changes without invalidation) may see an older entry, but every message
 *     the unit delivers is one that some content of that IRTE since its last invalidation allows.
 */
import { describe, expect, it } from "vitest";
import { Gcmd } from "../../spec/registers.ts";
import { command, iec, irMachine, type IrMachine } from "../../../test/support/interrupt-remapping.ts";
import { mulberry32 } from "../../../test/support/vfio-workload.ts";

const S = 6; // 128 entries
const ENTRIES = 2 ** (S + 1);
const SIDS = [0x0020, 0x0021, 0x0024, 0x0028, 0x0120, 0x0300, 0x05ff, 0xf0f8];

type Outcome = { ok: true; address: bigint; data: number } | { ok: false; reason: number };

/** What the spec says one IRTE (two qwords) does with a remappable request from `sid`. */
function checkIrte(lo: bigint, hi: bigint, sid: number): Outcome {
  if ((lo & 1n) === 0n) return { ok: false, reason: 0x22 };
  const dlm = (lo >> 5n) & 7n;
  const svt = Number((hi >> 18n) & 3n);
  const reserved = (lo & 0xf000n) !== 0n || ((lo >> 24n) & 0xffn) !== 0n || ((lo >> 32n) & 0xffn) !== 0n || (lo >> 48n) !== 0n
    || (hi >> 20n) !== 0n || dlm === 3n || dlm === 6n || svt === 3;
  if (reserved) return { ok: false, reason: 0x24 };
  const sidField = Number(hi & 0xffffn);
  if (svt === 1) {
    const sq = Number((hi >> 16n) & 3n);
    const keep = 0xffff & ~[0, 4, 6, 7][sq]!;
    if ((sid & keep) !== (sidField & keep)) return { ok: false, reason: 0x26 };
  } else if (svt === 2) {
    const bus = sid >> 8;
    if (bus < sidField >> 8 || bus > (sidField & 0xff)) return { ok: false, reason: 0x26 };
  }
  const address = 0xfee0_0000n + (((lo >> 40n) & 0xffn) << 12n) + (((lo >> 3n) & 1n) << 3n) + (((lo >> 2n) & 1n) << 2n);
  const data = Number(((lo >> 16n) & 0xffn) + (dlm << 8n) + (1n << 14n) + (((lo >> 4n) & 1n) << 15n));
  return { ok: true, address, data };
}

/** The request side: which index, or the fault before any IRTE is read; `index` -1 for a compatibility-format pass. */
function checkRequest(address: bigint, data: number, cfis: boolean): { index: number } | Outcome {
  if (address < 0xfee0_0000n || address > 0xfeef_ffffn || !Number.isInteger(data) || data < 0 || data > 0xffff_ffff) return { ok: false, reason: 0 };
  if ((address & 0x10n) === 0n) return cfis ? { ok: true, address, data } : { ok: false, reason: 0x25 };
  if (data >= 0x1_0000) return { ok: false, reason: 0x20 };
  let index = Number((address >> 5n) & 0x7fffn) + Number((address >> 2n) & 1n) * 0x8000;
  if ((address & 8n) !== 0n) index += data;
  if (index >= ENTRIES) return { ok: false, reason: 0x21 };
  return { index };
}

class Rig {
  readonly m: IrMachine;
  readonly table: [bigint, bigint][] = [];
  /** Contents of each IRTE since its last invalidation (the sloppy guest's allowance). */
  readonly history: [bigint, bigint][][] = [];
  cfis = false;
  delivered = 0;
  faults = 0;

  constructor(readonly random: () => number, cachingMode: boolean) {
    this.m = irMachine({ cachingMode, faultRecords: 8 }, S);
    for (let i = 0; i < ENTRIES; i++) { this.table.push([0n, 0n]); this.history.push([[0n, 0n]]); }
  }

  int(n: number): number { return Math.floor(this.random() * n); }
  chance(p: number): boolean { return this.random() < p; }
  bits(n: number): bigint {
    let v = 0n;
    for (let i = 0; i < n; i += 16) v |= BigInt(this.int(0x10000)) << BigInt(i);
    return v & ((1n << BigInt(n)) - 1n);
  }

  randomIrte(): [bigint, bigint] {
    if (this.chance(0.05)) return [this.bits(64), this.bits(64)];
    let lo = (this.chance(0.85) ? 1n : 0n) | (this.chance(0.2) ? 2n : 0n) | (BigInt(this.int(4)) << 2n) | (BigInt(this.int(2)) << 4n)
      | (BigInt([0, 1, 2, 4, 5, 7][this.int(6)]!) << 5n) | (BigInt(this.int(16)) << 8n) | (BigInt(this.int(256)) << 16n) | (BigInt(this.int(256)) << 40n);
    let hi = BigInt(this.chance(0.5) ? SIDS[this.int(SIDS.length)]! : this.int(0x10000)) | (BigInt(this.int(4)) << 16n) | (BigInt(this.int(3)) << 18n);
    if (this.chance(0.1)) lo |= 1n << BigInt([12, 13, 14, 15, 24, 31, 32, 39, 48, 63][this.int(10)]!);
    if (this.chance(0.05)) hi |= 1n << BigInt(20 + this.int(44));
    if (this.chance(0.03)) lo = (lo & ~(7n << 5n)) | ((this.chance(0.5) ? 3n : 6n) << 5n);
    if (this.chance(0.03)) hi |= 3n << 18n;
    return [lo, hi];
  }

  writeIrte(index: number): void {
    const entry = this.randomIrte();
    this.table[index] = entry;
    this.history[index]!.push(entry);
    this.m.writeIrte(index, entry);
  }

  invalidate(index: number): void {
    if (this.chance(0.3)) {
      this.m.queue.submit(iec.global());
      for (let i = 0; i < ENTRIES; i++) this.history[i] = [this.table[i]!];
      return;
    }
    const im = this.int(8);
    const first = index - (index % 2 ** im);
    this.m.queue.submit(iec.index(index, im));
    for (let i = first; i < first + 2 ** im && i < ENTRIES; i++) this.history[i] = [this.table[i]!];
  }

  randomRequest(): { sid: number; address: bigint; data: number } {
    const sid = this.chance(0.8) ? SIDS[this.int(SIDS.length)]! : this.int(0x10000);
    if (this.chance(0.03)) return { sid, address: this.bits(64), data: this.int(2 ** 32) };
    const handle = this.chance(0.9) ? this.int(ENTRIES + 8) : this.int(0x10000);
    const shv = this.chance(0.3);
    let address = 0xfee0_0000n | (BigInt(handle & 0x7fff) << 5n) | (BigInt(handle >> 15) << 2n) | (shv ? 8n : 0n) | BigInt(this.int(4));
    if (this.chance(0.9)) address |= 0x10n;
    else address = 0xfee0_0000n | (BigInt(this.int(256)) << 12n) | BigInt(this.int(16));
    let data = shv ? this.int(8) : this.int(0x10000);
    if (this.chance(0.05)) data += this.int(0x10000) * 0x10000;
    return { sid, address, data };
  }

  /** One request; `exact`: the guest kept every invalidation, so the answer must equal the checker's. */
  request(exact: boolean): void {
    const { sid, address, data } = this.randomRequest();
    let result!: Outcome;
    expect(() => { result = this.m.device.interruptRequest(sid, address, data); }).not.toThrow();
    const request = checkRequest(address, data, this.cfis);
    let expected: Outcome;
    let index = -1;
    if ("index" in request) {
      index = request.index;
      const [lo, hi] = this.table[index]!;
      expected = checkIrte(lo, hi, sid);
    } else {
      expected = request;
    }
    if (result.ok) this.delivered++;
    else this.faults++;
    if (exact || index < 0) {
      expect(result, `sid ${sid.toString(16)} address ${address.toString(16)} data ${data.toString(16)}`).toEqual(expected);
      return;
    }
    if (!result.ok) return; // a stale entry may refuse what the table now allows: a fault is never a wrong delivery
    const delivered = result;
    const allowed = this.history[index]!.some(([lo, hi]) => {
      const outcome = checkIrte(lo, hi, sid);
      return outcome.ok && outcome.address === delivered.address && outcome.data === delivered.data;
    });
    expect(allowed, `index ${index}: delivered ${delivered.address.toString(16)}/${delivered.data.toString(16)} that no IRTE content since its last invalidation allows`).toBe(true);
  }

  toggleCfi(): void {
    this.cfis = !this.cfis;
    command(this.m, Gcmd.CFI, this.cfis);
  }
}

describe("random IRTEs and interrupt writes against an independent checker", () => {
  for (const seed of [1, 2, 3, 0x5eed]) {
    for (const cachingMode of [false, true]) {
      it(`seed ${seed}, CM = ${cachingMode ? 1 : 0}: a correct guest gets exactly the spec's answers`, () => {
        const rig = new Rig(mulberry32(seed), cachingMode);
        for (let step = 0; step < 4000; step++) {
          const roll = rig.random();
          if (roll < 0.2) {
            const index = rig.int(ENTRIES);
            rig.writeIrte(index);
            rig.invalidate(index);
          } else if (roll < 0.22) {
            rig.toggleCfi();
          } else {
            rig.request(true);
          }
        }
        expect(rig.delivered).toBeGreaterThan(300);
        expect(rig.faults).toBeGreaterThan(300);
      });

      it(`seed ${seed}, CM = ${cachingMode ? 1 : 0}: a sloppy guest never gets a message no IRTE content allowed`, () => {
        const rig = new Rig(mulberry32(seed * 7919), cachingMode);
        for (let step = 0; step < 4000; step++) {
          const roll = rig.random();
          if (roll < 0.2) rig.writeIrte(rig.int(ENTRIES));
          else if (roll < 0.25) rig.invalidate(rig.int(ENTRIES));
          else if (roll < 0.26) rig.toggleCfi();
          else rig.request(false);
        }
        expect(rig.delivered).toBeGreaterThan(300);
      });
    }
  }

  it("the checker itself is not vacuous: it refuses what a wrong unit would deliver", () => {
    const lo = 1n | (0x41n << 16n) | (2n << 40n);
    expect(checkIrte(lo, 0n, 0x20)).toEqual({ ok: true, address: 0xfee0_2000n, data: 0x4041 });
    expect(checkIrte(lo, (1n << 18n) | 0x21n, 0x20)).toEqual({ ok: false, reason: 0x26 });
    expect(checkIrte(lo | (1n << 33n), 0n, 0x20)).toEqual({ ok: false, reason: 0x24 });
    expect(checkRequest(0xfee0_0010n | (BigInt(ENTRIES) << 5n), 0, false)).toEqual({ ok: false, reason: 0x21 });
  });
});
