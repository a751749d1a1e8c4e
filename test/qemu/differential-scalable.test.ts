/**
 * The QEMU 10.0 differential in scalable mode (issue 17): intel-iommu with x-scalable-mode=on
 * (and x-flts, x-pasid-mode) against our unit with scalableMode (firstStage, pasidBits 1).
 * Register file first: CAP/ECAP and every register's reset value and write rule. Skipped without
 * QEMU (REQUIRE_QEMU=1 makes that a failure), as the legacy differential.
 */
import { FRCD_OFFSET, Gcmd, IOTLB_OFFSET, Reg } from "../../src/spec/index.ts";
import { PasidGranularTranslationType as Pgtt } from "../../src/spec/scalable.ts";
import { EDU_SIDS, defineRegisterFileScenarios, describeDifferential, fillPattern, type MachineConfig, type Probe } from "./oracle.ts";

const EDU = EDU_SIDS[0]!;
const F_BIT_DWORD = 0x8000_0000n;

interface ScalableDomain {
  pgtt: number;
  /** Second stage: AW (levels aw + 2). */
  aw?: number;
  did?: number;
  contextPresent?: boolean;
  pasidEntryPresent?: boolean;
  /** Raw bits ORed into PASID-entry qword 0. */
  entryExtra?: bigint;
}

/**
 * Scalable-mode tables for edu (00:03.0, lower root-entry half) built through the machine: a
 * context entry with PDTS 0 and RID_PASID 0, a PASID directory and table, PASID 0's entry. Then
 * RTADDR with TTM = 01, SRTP and TE (caches are empty after reset: no invalidation needed).
 * Returns the stage's table root (second-stage SSPTPTR or first-stage FSPTPTR).
 */
async function scalableDomain(p: Probe, d: ScalableDomain): Promise<bigint> {
  const t = p.tables;
  const contextTable = t.pages.page();
  const directory = t.pages.page();
  const pasidTable = t.pages.page();
  const stageRoot = t.pages.page();
  await t.writeQword(t.rootTable, contextTable | 1n);
  const context = contextTable + BigInt((EDU & 0x7f) * 32);
  await t.writeQword(context + 8n, 0n);
  await t.writeQword(context, directory | (d.contextPresent === false ? 0n : 1n));
  await t.writeQword(directory, pasidTable | 1n);
  const q0 = (d.pgtt === Pgtt.SecondStage ? stageRoot : 0n) | (BigInt(d.pgtt) << 6n) | (BigInt(d.aw ?? 1) << 2n) | (d.pasidEntryPresent === false ? 0n : 1n) | (d.entryExtra ?? 0n);
  await t.writeQword(pasidTable + 8n, BigInt(d.did ?? 1));
  await t.writeQword(pasidTable + 16n, d.pgtt === Pgtt.FirstStage ? stageRoot : 0n);
  await t.writeQword(pasidTable, q0);
  await p.write(Reg.RTADDR, 8, t.rootTable | (1n << 10n));
  await t.command(Gcmd.SRTP);
  await t.command(Gcmd.TE);
  return stageRoot;
}

/** A first-stage mapping (4-level, P|RW|US at every level) of one page. Returns the leaf entry's address. */
async function mapFirstStage(p: Probe, root: bigint, iova: bigint, target: bigint, flags = 0x7n): Promise<bigint> {
  const t = p.tables;
  let table = root;
  for (let level = 4; level > 1; level--) {
    const entry = table + ((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * 8n;
    const current = await t.readQword(entry);
    if ((current & 1n) === 0n) {
      const next = t.pages.page();
      await t.writeQword(entry, next | 0x7n);
      table = next;
    } else {
      table = current & 0x000f_ffff_ffff_f000n;
    }
  }
  const leaf = table + ((iova >> 12n) & 0x1ffn) * 8n;
  await t.writeQword(leaf, target | flags);
  return leaf;
}

/** The 256-bit invalidation queue (IQA.DW = 1, 128 slots in one page) enabled; returns its base. */
async function queue256(p: Probe): Promise<{ base: bigint; tail: number }> {
  const base = p.tables.pages.page();
  await p.write(Reg.IQA, 8, base | (1n << 11n));
  await p.tables.command(Gcmd.QIE);
  return { base, tail: 0 };
}

/** Writes 256-bit descriptors (up to four qwords each) at the tail, a wait with status write last, and moves IQT. */
async function submit(p: Probe, q: { base: bigint; tail: number }, name: string, descriptors: readonly (readonly bigint[])[]): Promise<void> {
  const status = q.base + 0x800n;
  for (const d of [...descriptors, [5n | 0x20n | (0x5a5an << 32n), status]]) {
    const at = q.base + BigInt(q.tail * 32);
    for (let i = 0; i < 4; i++) await p.tables.writeQword(at + BigInt(i * 8), d[i] ?? 0n);
    q.tail = (q.tail + 1) % 64;
  }
  await p.write(Reg.IQT, 8, BigInt(q.tail * 32));
  await p.read(`${name}: IQH`, Reg.IQH, 8);
  await p.read(`${name}: FSTS`, Reg.FSTS, 4);
  await p.memory(`${name}: wait status`, status, 4);
}

async function dmaRoundTrip(p: Probe, iova: bigint, data: bigint): Promise<void> {
  await p.dma("read", { sid: EDU, iova: iova + 0x10n, length: 256, direction: "toDevice", bufferOffset: 0 });
  await p.dma("write", { sid: EDU, iova: iova + 0x800n, length: 256, direction: "toMemory", bufferOffset: 0 });
  await p.memory("page after", data + 0x800n, 256);
  await p.faultState();
}

async function faultAndClear(p: Probe, iova: bigint, write: boolean): Promise<void> {
  await p.dma(write ? "DMA write" : "DMA read", { sid: EDU, iova, length: 16, direction: write ? "toMemory" : "toDevice" });
  await p.faultState("after fault");
  await p.write(FRCD_OFFSET + 12, 4, F_BIT_DWORD);
  await p.write(Reg.FSTS, 4, 0xffn);
  await p.faultState("after clearing");
}

const CONFIGS: MachineConfig[] = [
  { awBits: 48, cachingMode: false, interruptRemapping: true, scalable: { firstStage: false, pasid: false } },
  { awBits: 39, cachingMode: true, interruptRemapping: false, scalable: { firstStage: false, pasid: true } },
  { awBits: 48, cachingMode: false, interruptRemapping: true, scalable: { firstStage: true, pasid: true } },
];


describeDifferential("QEMU 10.0 vs ours, scalable mode", CONFIGS, (differential, config) => {
  differential("CAP and ECAP", async (p) => {
    await p.read("CAP", Reg.CAP, 8);
    await p.read("ECAP", Reg.ECAP, 8);
  });

  defineRegisterFileScenarios(differential);

  differential("RTADDR keeps TTM as written (01 scalable, 11 abort-DMA, 10 reserved)", async (p) => {
    for (const ttm of [1n, 2n, 3n, 0n]) {
      await p.write(Reg.RTADDR, 8, 0x20_0000n | (ttm << 10n));
      await p.read(`RTADDR with TTM ${ttm}`, Reg.RTADDR, 8);
    }
  });

  differential("register-based invalidation while TTM = 01 is latched: CCMD and IOTLB report what they did", async (p) => {
    await scalableDomain(p, { pgtt: Pgtt.PassThrough });
    await p.write(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
    await p.read("CCMD after a global context invalidation", Reg.CCMD, 8);
    await p.write(IOTLB_OFFSET, 8, (1n << 63n) | (1n << 60n));
    await p.read("IOTLB after a global invalidation", IOTLB_OFFSET, 8);
  });

  // ---- the 256-bit queue and what its descriptors drop ----

  differential("256-bit queue: IOTLB page invalidation makes a changed second-stage or first-stage leaf seen", async (p) => {
    const first = config.scalable?.firstStage === true;
    const q = await queue256(p);
    const root = await scalableDomain(p, first ? { pgtt: Pgtt.FirstStage, did: 3 } : { pgtt: Pgtt.SecondStage, aw: levels - 2, did: 3 });
    const one = p.tables.pages.page(), two = p.tables.pages.page();
    await fillPattern(p, one, 1);
    await fillPattern(p, two, 2);
    const leaf = first ? await mapFirstStage(p, root, 0x4000n, one) : await p.tables.map(root, levels, 0x4000n, one);
    await p.dma("write before", { sid: EDU, iova: 0x4100n, length: 64, direction: "toMemory" });
    await p.tables.writeQword(leaf, two | (first ? 0x7n : 0x3n));
    await p.dma("write, leaf changed, not invalidated", { sid: EDU, iova: 0x4200n, length: 64, direction: "toMemory" });
    await p.memory("page one", one, 4096);
    await p.memory("page two", two, 4096);
    // First stage: PASID-based IOTLB, page-selective in PASID 0 (RID_PASID); second stage: IOTLB page-selective in DID 3.
    const invalidation = first ? [6n | (3n << 4n) | (3n << 16n), 0x4000n] : [2n | (3n << 4n) | (3n << 16n), 0x4000n];
    await submit(p, q, "page invalidation", [invalidation]);
    await p.dma("write after", { sid: EDU, iova: 0x4300n, length: 64, direction: "toMemory" });
    await p.memory("page one after", one, 4096);
    await p.memory("page two after", two, 4096);
    await p.faultState();
  });

  differential("256-bit queue: PASID-cache and IOTLB invalidation make a cleared PASID-table entry seen", async (p) => {
    const first = config.scalable?.firstStage === true;
    const q = await queue256(p);
    const root = await scalableDomain(p, first ? { pgtt: Pgtt.FirstStage, did: 3 } : { pgtt: Pgtt.SecondStage, aw: levels - 2, did: 3 });
    const data = p.tables.pages.page();
    await fillPattern(p, data, 4);
    if (first) await mapFirstStage(p, root, 0x4000n, data);
    else await p.tables.map(root, levels, 0x4000n, data);
    await p.dma("read before", { sid: EDU, iova: 0x4000n, length: 16, direction: "toDevice" });
    // The PASID table is the third page scalableDomain allocated after the root table.
    const pasidTable = p.tables.rootTable + 3n * 4096n;
    await p.tables.writeQword(pasidTable, 0n);
    const iotlb = first ? [6n | (2n << 4n) | (3n << 16n)] : [2n | (2n << 4n) | (3n << 16n)];
    await submit(p, q, "PASID-cache and IOTLB invalidation", [[7n | (1n << 4n) | (3n << 16n)], iotlb]);
    await p.dma("read after", { sid: EDU, iova: 0x4000n, length: 16, direction: "toDevice" });
    await p.faultState();
  });

  differential("256-bit queue: a PASID-cache descriptor with the reserved granularity 10", async (p) => {
    const q = await queue256(p);
    await submit(p, q, "PASID-cache G 10", [[7n | (2n << 4n)]]);
    await p.read("IQERCD", Reg.IQERCD, 8);
  });

  // ---- DMA through scalable-mode tables (requests without PASID: RID_PASID 0) ----

  const levels = config.awBits === 48 ? 4 : 3;
  if (!config.scalable?.firstStage) {
    differential("second-stage translation through RID_PASID: edu reads and writes a mapped page", async (p) => {
      const root = await scalableDomain(p, { pgtt: Pgtt.SecondStage, aw: levels - 2 });
      const data = p.tables.pages.page();
      await fillPattern(p, data, 3);
      await p.tables.map(root, levels, 0x4000n, data);
      await dmaRoundTrip(p, 0x4000n, data);
    });
    differential("pass-through PASID entry: edu's addresses are untranslated", async (p) => {
      await scalableDomain(p, { pgtt: Pgtt.PassThrough });
      const data = p.tables.pages.page();
      await fillPattern(p, data, 5);
      await dmaRoundTrip(p, data, data);
    });
    differential("fault: second-stage write to a read-only page", async (p) => {
      const root = await scalableDomain(p, { pgtt: Pgtt.SecondStage, aw: levels - 2 });
      await p.tables.map(root, levels, 0x4000n, p.tables.pages.page(), { write: false });
      await faultAndClear(p, 0x4010n, true);
    });
    differential("fault: second-stage read of an unmapped page", async (p) => {
      await scalableDomain(p, { pgtt: Pgtt.SecondStage, aw: levels - 2 });
      await faultAndClear(p, 0x9000n, false);
    });
  } else {
    differential("first-stage translation through RID_PASID: edu reads and writes; A and D set by the unit", async (p) => {
      const root = await scalableDomain(p, { pgtt: Pgtt.FirstStage });
      const data = p.tables.pages.page();
      await fillPattern(p, data, 9);
      const leaf = await mapFirstStage(p, root, 0x4000n, data);
      await p.dma("read", { sid: EDU, iova: 0x4010n, length: 256, direction: "toDevice", bufferOffset: 0 });
      await p.memory("leaf after read", leaf, 8);
      await dmaRoundTrip(p, 0x4000n, data);
      await p.memory("leaf after write", leaf, 8);
    });
    differential("fault: first-stage entry not present", async (p) => {
      await scalableDomain(p, { pgtt: Pgtt.FirstStage });
      await faultAndClear(p, 0x9000n, false);
    });
    differential("fault: first-stage write to a read-only page", async (p) => {
      const root = await scalableDomain(p, { pgtt: Pgtt.FirstStage });
      await mapFirstStage(p, root, 0x4000n, p.tables.pages.page(), 0x5n);
      await faultAndClear(p, 0x4010n, true);
    });
    differential("fault: second-stage PASID entry on a first-stage-only unit", async (p) => {
      await scalableDomain(p, { pgtt: Pgtt.SecondStage, aw: 2 });
      await faultAndClear(p, 0x4000n, false);
    });
  }
  differential("fault: PASID-table entry not present", async (p) => {
    await scalableDomain(p, { pgtt: Pgtt.PassThrough, pasidEntryPresent: false });
    await faultAndClear(p, 0x4000n, false);
  });
  differential("fault: scalable-mode context entry not present", async (p) => {
    await scalableDomain(p, { pgtt: Pgtt.PassThrough, contextPresent: false });
    await faultAndClear(p, 0x4000n, false);
  });
  differential("fault: nested PASID entry (ECAP.NEST = 0)", async (p) => {
    await scalableDomain(p, { pgtt: Pgtt.Nested });
    await faultAndClear(p, 0x4000n, false);
  });
});
