/**
 * Differential tests: the same guest-side scenario runs on QEMU 10.0's intel-iommu (through qtest)
 * and on our VtdDevice, and everything each machine showed (register values, fault records,
 * MSIs, DMA outcomes, bytes in RAM) must be identical, except what a listed departure
 * (DEPARTURES in ./oracle.ts, the one table of them) explains.
 *
 * Without QEMU the suite is skipped, unless REQUIRE_QEMU=1, which makes it fail.
 * DIFF_VERBOSE=1 prints both logs of every scenario, DIFF_MISMATCHES=1 each mismatch on a line.
 * Scenarios never do what aborts QEMU (64-bit writes at 0x38/0xA0/0xA8, in 7.2 and 10.0 alike).
 */
import {
  Ccmd, EventControl, FRCD_OFFSET, Fsts, Gcmd, IOTLB_OFFSET, IVA_OFFSET, Iotlb, Pte, Reg, fieldMask, setField,
} from "../../src/spec/index.ts";
import { describe, expect, it } from "vitest";
import {
  DEPARTURES, EDU_SIDS, Probe, REGISTER_FILE_END, defineRegisterFileScenarios, describeDifferential, enableTranslation, fillPattern, mapOnePage, rootOf,
  startTranslation, type MachineConfig,
} from "./oracle.ts";

const CONFIGS: MachineConfig[] = [
  { awBits: 39, cachingMode: false, interruptRemapping: false },
  { awBits: 39, cachingMode: true, interruptRemapping: true },
  { awBits: 48, cachingMode: false, interruptRemapping: true },
];

const EDU = EDU_SIDS[0]!;
const EDU2 = EDU_SIDS[1]!;
const FRCD_HI = FRCD_OFFSET + 8;
const F_BIT_DWORD = 0x8000_0000n;

describeDifferential("QEMU 10.0 vs ours", CONFIGS, (differential, config) => {
  // ---- register file ----

  defineRegisterFileScenarios(differential);

  differential("FECTL/IECTL and data/address registers: dword writes of IM and IP", async (p) => {
    for (const reg of [Reg.FECTL, Reg.IECTL]) {
      const name = `0x${reg.toString(16)}`;
      await p.write(reg, 4, EventControl.IP);
      await p.read(`${name} IP only`, reg, 4);
      await p.write(reg, 4, EventControl.IM | EventControl.IP);
      await p.read(`${name} IM|IP`, reg, 4);
      await p.write(reg, 4, 0x3fff_ffffn);
      await p.read(`${name} rsvd`, reg, 4);
    }
    await p.interrupts();
  });

  differential("reset after activity restores every register", async (p, config) => {
    const q = p.tables.pages.page();
    await mapOnePage(p, { iova: 0x4000n, config });
    await p.write(Reg.FECTL, 4, 0n);
    await p.write(Reg.FEDATA, 4, 0x4077n);
    await p.write(Reg.FEADDR, 4, 0xfee0_4000n);
    await p.dma("fault", { sid: EDU, iova: 0x5000n, length: 8, direction: "toDevice" });
    await p.write(Reg.IQA, 8, q);
    await p.tables.command(Gcmd.QIE);
    await p.write(IVA_OFFSET, 8, 0x1234_5000n);
    await p.interrupts("MSIs before reset");
    await p.m.resetUnit();
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 4) await p.read(`dword 0x${offset.toString(16)}`, offset, 4);
    await p.dma("DMA after reset (TE off: identity)", { sid: EDU, iova: q, length: 8, direction: "toDevice" });
    await p.faultState("after reset");
  });

  // ---- GCMD / GSTS ----

  differential("GCMD reads 0; commands without an effect leave GSTS alone", async (p) => {
    const t = p.tables;
    await p.read("GCMD at reset", Reg.GCMD);
    for (const [name, bit] of Object.entries(Gcmd)) {
      if (bit === Gcmd.TE || bit === Gcmd.SRTP || bit === Gcmd.QIE) continue;
      await p.write(Reg.GCMD, 4, bit);
      await p.read(`GSTS after ${name}`, Reg.GSTS);
      await p.read(`GCMD after ${name}`, Reg.GCMD);
      await p.write(Reg.GCMD, 4, 0n);
      await p.read(`GSTS after clearing ${name}`, Reg.GSTS);
    }
    await p.write(Reg.GCMD, 4, 0x7f_ffffn);
    await p.read("GSTS after reserved bits", Reg.GSTS);
    await t.command(Gcmd.WBF);
    await p.read("GSTS after WBF (sequence)", Reg.GSTS);
  });

  differential("SRTP latches RTADDR; TE on and off; translation uses the latched table", async (p) => {
    const t = p.tables;
    const { data } = await mapOnePage(p, { iova: 0x5000n });
    await p.read("GSTS before", Reg.GSTS);
    await p.write(Reg.RTADDR, 8, t.rootTable);
    await p.read("RTADDR written", Reg.RTADDR, 8);
    await p.read("GSTS before SRTP", Reg.GSTS);
    p.log.note("GSTS after SRTP", await t.command(Gcmd.SRTP));
    p.log.note("GSTS after TE", await t.command(Gcmd.TE));
    // RTADDR now points at an empty page: without a new SRTP the old table stays in use.
    const empty = t.pages.page();
    await p.write(Reg.RTADDR, 8, empty);
    await p.read("RTADDR rewritten", Reg.RTADDR, 8);
    await p.dma("DMA through latched table", { sid: EDU, iova: 0x5000n, length: 64, direction: "toDevice" });
    await p.dma("DMA back", { sid: EDU, iova: 0x5040n, length: 64, direction: "toMemory" });
    await p.memory("bytes landed", data + 0x40n, 64);
    p.log.note("GSTS after SRTP again", await t.command(Gcmd.SRTP));
    // CAP.ESRTPS = 0 (both units): SRTP need not drop cached context entries (ours keep them, QEMU
    // drops them); software invalidates globally after it (VT-d §11.4.4), and then both agree.
    await p.write(Reg.CCMD, 8, (1n << 63n) | (1n << 61n));
    await p.dma("DMA after re-latch (root not present)", { sid: EDU, iova: 0x5000n, length: 64, direction: "toDevice" });
    await p.faultState();
    p.log.note("GSTS after TE off", await t.command(Gcmd.TE, false));
    await p.dma("DMA with TE off (identity)", { sid: EDU, iova: data, length: 64, direction: "toMemory", bufferOffset: 0x100 });
    await p.memory("identity bytes", data, 128);
    // A guest that copies GSTS unmasked re-issues SRTP with every command (VT-d §3).
    await p.write(Reg.GCMD, 4, (await p.read("GSTS", Reg.GSTS)) | Gcmd.TE);
    await p.read("GSTS after unmasked copy", Reg.GSTS);
  });

  differential("QIE on and off with an empty queue", async (p) => {
    const t = p.tables;
    const queue = t.pages.page();
    await p.write(Reg.IQA, 8, queue);
    await p.read("IQA", Reg.IQA, 8);
    p.log.note("GSTS after QIE", await t.command(Gcmd.QIE));
    await p.read("IQA after QIE", Reg.IQA, 8);
    await p.read("IQH", Reg.IQH, 8);
    await p.read("IQT", Reg.IQT, 8);
    await p.read("FSTS", Reg.FSTS);
    p.log.note("GSTS after QIE off", await t.command(Gcmd.QIE, false));
    await p.read("IQH after off", Reg.IQH, 8);
    await p.read("FSTS after off", Reg.FSTS);
  });

  // ---- register-based invalidation ----

  differential("CCMD: global, domain, device, reserved granularity; dword and qword writes", async (p) => {
    const ccmd = (cirg: number, sid = 0, fm = 0, did = 0) =>
      setField(setField(setField(setField(fieldMask(Ccmd.ICC), Ccmd.CIRG, cirg), Ccmd.SID, sid), Ccmd.FM, fm), Ccmd.DID, did);
    for (const [name, value] of [
      ["global", ccmd(1)],
      ["domain", ccmd(2, 0, 0, 5)],
      ["device", ccmd(3, EDU, 0, 1)],
      ["device FM=3", ccmd(3, EDU, 3, 1)],
      ["reserved CIRG 0", ccmd(0)],
    ] as const) {
      await p.write(Reg.CCMD, 8, value);
      await p.read(`CCMD after qword ${name}`, Reg.CCMD, 8);
      await p.write(Reg.CCMD, 4, value & 0xffff_ffffn);
      await p.read(`CCMD after low dword ${name}`, Reg.CCMD, 8);
      await p.write(Reg.CCMD + 4, 4, value >> 32n);
      await p.read(`CCMD after high dword ${name}`, Reg.CCMD, 8);
    }
    // High dword without ICC: nothing happens.
    await p.write(Reg.CCMD + 4, 4, 0x2000_0000n);
    await p.read("CCMD high dword without ICC", Reg.CCMD, 8);
  });

  differential("IOTLB: global, domain, page with AM 0/9/18, AM 19 too big, IIRG 0; dword and qword writes", async (p) => {
    const iotlb = (iirg: number, did = 0) => setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, iirg), Iotlb.DID, did);
    const cases: [string, bigint, bigint][] = [
      ["global", iotlb(1), 0n],
      ["domain", iotlb(2, 7), 0n],
      ["page AM0", iotlb(3, 7), 0x1234_5000n],
      ["page AM9", iotlb(3, 7), 0x4000_0000n | 9n],
      ["page AM18", iotlb(3, 7), 0x4000_0000n | 18n],
      ["page AM19", iotlb(3, 7), 0x4000_0000n | 19n],
      ["page IH", iotlb(3, 7), 0x5000n | 0x40n],
      ["reserved IIRG 0", iotlb(0, 7), 0n],
      ["with DR DW", iotlb(1) | (3n << 48n), 0n],
    ];
    for (const [name, command, iva] of cases) {
      await p.write(IVA_OFFSET, 8, iva);
      await p.read(`IVA after ${name}`, IVA_OFFSET, 8);
      await p.write(IOTLB_OFFSET, 8, command);
      await p.read(`IOTLB after qword ${name}`, IOTLB_OFFSET, 8);
      await p.write(IOTLB_OFFSET + 4, 4, command >> 32n);
      await p.read(`IOTLB after high dword ${name}`, IOTLB_OFFSET, 8);
    }
  });

  differential("invalidation has effect: stale IOTLB entries until PSI/DSI/global", async (p, config) => {
    const t = p.tables;
    const { root, levels, data } = await mapOnePage(p, { iova: 0x7000n, did: 3, config });
    const second = t.pages.page();
    await fillPattern(p, second, 0x40);
    await p.dma("first DMA (fills the IOTLB)", { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice" });
    await p.dma("stored", { sid: EDU, iova: 0x7000n, length: 32, direction: "toMemory", bufferOffset: 0 });
    // Point the page elsewhere: a cached translation still goes to the old page.
    await t.map(root, levels, 0x7000n, second);
    await p.dma("after remap, no invalidation", { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice", bufferOffset: 0x200 });
    await p.dma("write back after remap", { sid: EDU, iova: 0x7800n, length: 32, direction: "toMemory", bufferOffset: 0x200 });
    await p.memory("old page", data + 0x800n, 32);
    await p.memory("new page", second + 0x800n, 32);
    // PSI of another page, then of another domain: still stale.
    await p.write(IVA_OFFSET, 8, 0x9000n);
    await p.write(IOTLB_OFFSET, 8, setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 3), Iotlb.DID, 3));
    await p.read("IOTLB PSI other page", IOTLB_OFFSET, 8);
    await p.write(IOTLB_OFFSET, 8, setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 2), Iotlb.DID, 4));
    await p.read("IOTLB DSI other domain", IOTLB_OFFSET, 8);
    await p.dma("after unrelated invalidations", { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice", bufferOffset: 0x300 });
    await p.dma("write back", { sid: EDU, iova: 0x7900n, length: 32, direction: "toMemory", bufferOffset: 0x300 });
    await p.memory("old page after unrelated", data + 0x900n, 32);
    await p.memory("new page after unrelated", second + 0x900n, 32);
    // PSI of the page: now the new mapping is used.
    await p.write(IVA_OFFSET, 8, 0x7000n);
    await p.write(IOTLB_OFFSET, 8, setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 3), Iotlb.DID, 3));
    await p.read("IOTLB PSI", IOTLB_OFFSET, 8);
    await p.dma("after PSI", { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice", bufferOffset: 0x400 });
    await p.dma("write back after PSI", { sid: EDU, iova: 0x7a00n, length: 32, direction: "toMemory", bufferOffset: 0x400 });
    await p.memory("old page after PSI", data + 0xa00n, 32);
    await p.memory("new page after PSI", second + 0xa00n, 32);
    // Back to the first page, with a domain-selective invalidation.
    await t.map(root, levels, 0x7000n, data);
    await p.write(IOTLB_OFFSET, 8, setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 2), Iotlb.DID, 3));
    await p.dma("after DSI", { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice", bufferOffset: 0x500 });
    await p.dma("write back after DSI", { sid: EDU, iova: 0x7b00n, length: 32, direction: "toMemory", bufferOffset: 0x500 });
    await p.memory("old page after DSI", data + 0xb00n, 32);
    await p.memory("new page after DSI", second + 0xb00n, 32);
  });

  differential("register page-selective invalidation with IVA.ADDR bits at and above MGAW", async (p, config) => {
    const t = p.tables;
    const { root, levels, data } = await mapOnePage(p, { iova: 0x7000n, did: 5, config });
    const other = t.pages.page();
    const psi = setField(setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 3), Iotlb.DID, 5);
    for (const [name, bit] of [["MGAW", BigInt(config.awBits)], ["63", 63n]] as const) {
      await t.map(root, levels, 0x7000n, data);
      await p.write(IOTLB_OFFSET, 8, setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 1));
      await p.dma(`bit ${name}: cached`, { sid: EDU, iova: 0x7000n, length: 32, direction: "toDevice" });
      await t.map(root, levels, 0x7000n, other);
      await p.write(IVA_OFFSET, 8, 0x7000n | (1n << bit));
      await p.read(`bit ${name}: IVA`, IVA_OFFSET, 8);
      await p.write(IOTLB_OFFSET, 8, psi);
      await p.read(`bit ${name}: IOTLB`, IOTLB_OFFSET, 8);
      const at = bit === 63n ? 0x600n : 0x500n;
      await p.dma(`bit ${name}: after PSI`, { sid: EDU, iova: 0x7000n + at, length: 32, direction: "toMemory" });
      await p.memory(`bit ${name}: new page`, other + at, 32);
      await p.memory(`bit ${name}: old page`, data + at, 32);
    }
  });

  differential("context cache: a changed context entry is used after a device/global invalidation", async (p, config) => {
    const t = p.tables;
    const { data } = await mapOnePage(p, { iova: 0x3000n, did: 1, config });
    const levels = 3;
    const otherRoot = t.newTableRoot();
    const other = t.pages.page();
    await fillPattern(p, other, 0x80);
    await t.map(otherRoot, levels, 0x3000n, other);
    await p.dma("first", { sid: EDU, iova: 0x3000n, length: 16, direction: "toDevice" });
    await t.setContext(EDU, { tableRoot: otherRoot, aw: 1, did: 2 });
    await p.write(Reg.CCMD, 8, setField(setField(setField(fieldMask(Ccmd.ICC), Ccmd.CIRG, 3), Ccmd.SID, EDU), Ccmd.DID, 1));
    await p.read("CCMD device", Reg.CCMD, 8);
    await p.write(IOTLB_OFFSET, 8, setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 1));
    await p.dma("after context + IOTLB invalidation", { sid: EDU, iova: 0x3000n, length: 16, direction: "toDevice", bufferOffset: 0x10 });
    await p.dma("write back", { sid: EDU, iova: 0x3800n, length: 32, direction: "toMemory" });
    await p.memory("old domain page", data + 0x800n, 32);
    await p.memory("new domain page", other + 0x800n, 32);
    // The context entry goes away: global context invalidation makes it fault.
    await t.setContext(EDU, { present: false });
    await p.write(Reg.CCMD, 8, setField(fieldMask(Ccmd.ICC), Ccmd.CIRG, 1));
    await p.write(IOTLB_OFFSET, 8, setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 1));
    await p.dma("after removal", { sid: EDU, iova: 0x3000n, length: 16, direction: "toDevice" });
    await p.faultState();
  });

  // ---- translation ----

  differential("3-level tables: 4 KiB pages both directions, bytes compared", async (p, config) => {
    await translationScenario(p, config, 3);
  });

  if (config.awBits === 48) {
    differential("4-level tables: 4 KiB pages both directions, bytes compared", async (p, config) => {
      await translationScenario(p, config, 4);
    });
  } else {
    differential("4-level context (AW=2) where SAGAW offers only 39 bits: invalid context", async (p, config) => {
      await mapOnePage(p, { iova: 0x1000n, config, levels: 4 });
      await p.dma("DMA", { sid: EDU, iova: 0x1000n, length: 16, direction: "toDevice" });
      await p.faultState();
    });
  }

  differential("the whole 4 KiB edu buffer in one DMA, across two pages (QEMU 7.2's edu aborted on it)", async (p, config) => {
    const t = p.tables;
    const { root, data } = await mapOnePage(p, { iova: 0xd000n, config });
    const next = t.pages.page();
    await fillPattern(p, next, 0x33);
    await t.map(root, 3, 0xe000n, next);
    await p.dma("4096 bytes read", { sid: EDU, iova: 0xd800n, length: 4096, direction: "toDevice" });
    await p.dma("4096 bytes written back", { sid: EDU, iova: 0xd000n, length: 4096, direction: "toMemory" });
    await p.memory("first page", data, 4096);
    await p.memory("second page", next, 4096);
    await p.faultState();
  });

  differential("2 MiB and 1 GiB superpages", async (p, config) => {
    const t = p.tables;
    const root = await enableTranslation(p, { config });
    const big = 0x40_0000n; // a 2 MiB-aligned frame inside scenario memory, above the pages the allocator hands out
    await fillPattern(p, big + 0x1_2000n, 0x11);
    await t.map(root, 3, 0x20_0000n, big, { level: 2 });
    await p.dma("2M read", { sid: EDU, iova: 0x21_2010n, length: 48, direction: "toDevice" });
    await p.dma("2M write", { sid: EDU, iova: 0x21_2800n, length: 48, direction: "toMemory" });
    await p.memory("2M landed", big + 0x1_2800n, 48);
    await t.map(root, 3, 0x4000_0000n, 0n, { level: 3 });
    await p.dma("1G read", { sid: EDU, iova: 0x4000_0000n + big + 0x1_2010n, length: 48, direction: "toDevice", bufferOffset: 0x100 });
    await p.dma("1G write", { sid: EDU, iova: 0x4000_0000n + big + 0x1_2c00n, length: 48, direction: "toMemory", bufferOffset: 0x100 });
    await p.memory("1G landed", big + 0x1_2c00n, 48);
    await p.faultState();
  });

  differential("a DMA crossing a page boundary into an unmapped page", async (p, config) => {
    const t = p.tables;
    await mapOnePage(p, { iova: 0x8000n, config });
    const dest = t.pages.page();
    await p.dma("fill buffer", { sid: EDU, iova: 0x8000n, length: 4080, direction: "toDevice" });
    await t.map(await rootOf(p), 3, 0xa000n, dest);
    await p.dma("cross into unmapped (write)", { sid: EDU, iova: 0xa800n, length: 4080, direction: "toMemory" });
    await p.memory("first page tail", dest + 0x800n, 0x800);
    await p.faultState();
  });

  differential("a DMA whose first page faults and second page is mapped", async (p, config) => {
    const t = p.tables;
    const { data } = await mapOnePage(p, { iova: 0xc000n, config });
    const dest = t.pages.page();
    await p.dma("fill buffer", { sid: EDU, iova: 0xc000n, length: 4080, direction: "toDevice" });
    await t.map(await rootOf(p), 3, 0xb000n, dest);
    await p.dma("write from unmapped into mapped", { sid: EDU, iova: 0xa800n, length: 4080, direction: "toMemory" });
    await p.memory("second page head", dest, 0x800);
    await p.faultState("after write");
    await p.dma("read from unmapped into mapped", { sid: EDU, iova: 0xa800n, length: 4080, direction: "toDevice" });
    await p.dma("buffer out", { sid: EDU, iova: 0xc000n, length: 4080, direction: "toMemory" });
    await p.memory("buffer as read", data, 4096);
    await p.faultState("after read");
  });

  differential("pass-through context (TT=2)", async (p, config) => {
    const t = p.tables;
    const data = t.pages.page();
    await fillPattern(p, data, 0x21);
    await t.setContext(EDU, { tt: 2, aw: config.awBits === 48 ? 2 : 1, did: 9 });
    await startTranslation(p);
    await p.dma("PT read", { sid: EDU, iova: data, length: 64, direction: "toDevice" });
    await p.dma("PT write", { sid: EDU, iova: data + 0x400n, length: 64, direction: "toMemory" });
    await p.memory("PT landed", data + 0x400n, 64);
    await p.faultState();
  });

  differential("edu buffer after a faulted read", async (p, config) => {
    const { data } = await mapOnePage(p, { iova: 0x2000n, config });
    await p.dma("good read", { sid: EDU, iova: 0x2000n, length: 64, direction: "toDevice" });
    await p.dma("faulted read", { sid: EDU, iova: 0x6000n, length: 64, direction: "toDevice" });
    await p.dma("write buffer back", { sid: EDU, iova: 0x2400n, length: 64, direction: "toMemory" });
    await p.memory("buffer contents", data + 0x400n, 64);
  });

  // ---- faults ----

  const faultCase = (name: string, setup: (p: Probe, config: MachineConfig) => Promise<bigint>, write = false, knownBug?: string) =>
    differential(`fault: ${name}`, async (p, cfg) => {
      const iova = await setup(p, cfg);
      await p.dma(write ? "DMA write" : "DMA read", { sid: EDU, iova, length: 16, direction: write ? "toMemory" : "toDevice" });
      await p.faultState("after fault");
      // Clear the record (F is RW1C), then FSTS.
      await p.write(FRCD_HI + 4, 4, F_BIT_DWORD);
      await p.faultState("after clearing F");
      await p.write(Reg.FSTS, 4, 0xffn);
      await p.faultState("after clearing FSTS");
    }, knownBug);

  faultCase("root entry not present", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot() });
    await p.tables.writeQword(p.tables.rootTable, 0n);
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry not present", async (p) => {
    await p.tables.setContext(EDU2, { tableRoot: p.tables.newTableRoot() });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("write to a read-only page", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, write: false });
    return 0x4010n;
  }, true);
  faultCase("read of a write-only page", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, read: false });
    return 0x4010n;
  });
  faultCase("read of a non-present PTE", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    return 0x5000n;
  });
  faultCase("write through a non-present PDE", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    return 0x4000_0000n;
  }, true);
  faultCase("address beyond MGAW / AGAW", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    return 1n << 39n;
  });
  faultCase("address far beyond MGAW", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    return 1n << 56n;
  });
  faultCase("reserved bit 11 (SNP without ECAP.SC) in a PTE", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, extra: Pte.SNP });
    return 0x4000n;
  });
  faultCase("reserved bit 62 in a PTE", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, extra: Pte.IW });
    return 0x4000n;
  });
  faultCase("address bits above HAW in a PTE", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, extra: 1n << 50n });
    return 0x4000n;
  });
  faultCase("reserved bits in a 2 MiB leaf (bits 20:12)", async (p, config) => {
    const root = await enableTranslation(p, { config });
    await p.tables.map(root, 3, 0x20_0000n, 0x40_0000n | 0x1000n, { level: 2 });
    return 0x20_0000n;
  });
  faultCase("reserved bit in a non-present PTE (not a fault of its own)", async (p, config) => {
    const { leaf } = await mapOnePage(p, { iova: 0x4000n, config });
    await p.tables.writeQword(leaf, 1n << 50n);
    return 0x4000n;
  });
  faultCase("root entry reserved bits", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot() });
    await p.tables.contextTable(0, 0x10n);
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("root entry: non-zero high qword", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot() });
    await p.tables.contextTable(0, 0n, 1n);
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry reserved bits (lo 11:4)", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), extraLo: 0x10n });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry reserved bits (hi bit 7)", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), extraHi: 0x80n });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry table pointer above HAW", async (p, config) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), extraLo: 1n << BigInt(config.awBits) });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("root entry context-table pointer above HAW", async (p, config) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot() });
    await p.tables.contextTable(0, 1n << BigInt(config.awBits));
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry with DID 0 (not a fault in either)", async (p, config) => {
    await mapOnePage(p, { iova: 0x1000n, config, did: 0 });
    return 0x1000n;
  });
  faultCase("TE without SRTP (no root table latched)", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot() });
    await p.write(Reg.RTADDR, 8, p.tables.rootTable);
    await p.tables.command(Gcmd.TE);
    return 0x1000n;
  });
  if (config.awBits === 48) {
    faultCase("PS bit in a PML4E (reserved)", async (p, config) => {
      const { root } = await mapOnePage(p, { iova: 0x1000n, config, levels: 4 });
      await p.tables.writeQword(root, (await p.tables.readQword(root)) | Pte.PS);
      return 0x1000n;
    });
  }
  faultCase("context entry TT=3", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), tt: 3 });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry TT=1 without device-TLB", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), tt: 1 });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("context entry AW=0", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), aw: 0 });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("root table outside RAM", async (p) => {
    await p.write(Reg.RTADDR, 8, 0x40_0000_0000n);
    await p.tables.command(Gcmd.SRTP);
    await p.tables.command(Gcmd.TE);
    return 0x1000n;
  });
  faultCase("context table outside RAM", async (p) => {
    await p.tables.writeQword(p.tables.rootTable, 0x40_0000_0000n | 1n);
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("page table outside RAM", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: 0x40_0000_0000n });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("page directory outside RAM (a lower-level table read error)", async (p, config) => {
    const root = await enableTranslation(p, { config });
    await p.tables.writeQword(root, 0x40_0000_0000n | 3n);
    return 0x1000n;
  });
  faultCase("translation into the interrupt range", async (p, config) => {
    const root = await enableTranslation(p, { config });
    await p.tables.map(root, 3, 0x4000n, 0xfee0_0000n);
    return 0x4000n;
  }, true);
  faultCase("FPD=1 suppresses a qualified fault (PTE not present)", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config, fpd: true });
    return 0x5000n;
  });
  faultCase("FPD=1 with context entry not present", async (p) => {
    await p.tables.setContext(EDU, { present: false, fpd: true });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("FPD=1 with a reserved context bit (0xB)", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), fpd: true, extraLo: 0x10n });
    await startTranslation(p);
    return 0x1000n;
  });
  faultCase("FPD=1 does not hide root entry not present", async (p) => {
    await p.tables.setContext(EDU, { tableRoot: p.tables.newTableRoot(), fpd: true });
    await p.tables.writeQword(p.tables.rootTable, 0n);
    await startTranslation(p);
    return 0x1000n;
  });

  differential("fault recording: compression, overflow (PFO), RW1C of F and PFO", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    await p.tables.setContext(EDU2, { tableRoot: p.tables.newTableRoot(), did: 2 });
    await p.write(IOTLB_OFFSET, 8, setField(fieldMask(Iotlb.IVT), Iotlb.IIRG, 1));
    await p.write(Reg.CCMD, 8, setField(fieldMask(Ccmd.ICC), Ccmd.CIRG, 1));
    await p.dma("first fault", { sid: EDU, iova: 0x5000n, length: 8, direction: "toDevice" });
    await p.faultState("1");
    await p.dma("same source again", { sid: EDU, iova: 0x6000n, length: 8, direction: "toMemory" });
    await p.faultState("2");
    await p.dma("other source", { sid: EDU2, iova: 0x6000n, length: 8, direction: "toDevice" });
    await p.faultState("3");
    await p.write(Reg.FSTS, 4, 0n);
    await p.read("FSTS after writing 0", Reg.FSTS);
    await p.write(FRCD_HI, 8, 0n);
    await p.read("FRCD hi after writing 0", FRCD_HI, 8);
    await p.write(Reg.FSTS, 4, Fsts.PFO);
    await p.faultState("after clearing PFO");
    await p.dma("while F still set", { sid: EDU2, iova: 0x6000n, length: 8, direction: "toDevice" });
    await p.faultState("4");
    await p.write(FRCD_HI, 8, 1n << 63n);
    await p.faultState("after clearing F with a qword");
    await p.dma("after clearing", { sid: EDU2, iova: 0x7000n, length: 8, direction: "toMemory" });
    await p.faultState("5");
  });

  differential("fault event: MSI with IM clear, IP with IM set, unmasking sends", async (p, config) => {
    await mapOnePage(p, { iova: 0x4000n, config });
    await p.write(Reg.FEDATA, 4, 0x4041n);
    await p.write(Reg.FEADDR, 4, 0xfee0_1000n);
    await p.write(Reg.FECTL, 4, 0n);
    await p.dma("fault with IM clear", { sid: EDU, iova: 0x5000n, length: 8, direction: "toDevice" });
    await p.faultState("unmasked");
    await p.write(FRCD_HI + 4, 4, F_BIT_DWORD);
    await p.write(Reg.FSTS, 4, 0xffn);
    await p.faultState("cleared");
    await p.write(Reg.FECTL, 4, EventControl.IM);
    await p.dma("fault with IM set", { sid: EDU, iova: 0x5000n, length: 8, direction: "toMemory" });
    await p.faultState("masked");
    await p.write(Reg.FECTL, 4, 0n);
    await p.faultState("unmasking");
    await p.write(Reg.FECTL, 4, EventControl.IM);
    await p.write(FRCD_HI + 4, 4, F_BIT_DWORD);
    await p.faultState("F cleared while masked");
    await p.dma("third fault, masked", { sid: EDU, iova: 0x6000n, length: 8, direction: "toDevice" });
    await p.faultState("masked again");
    await p.write(FRCD_HI + 4, 4, F_BIT_DWORD);
    await p.write(Reg.FSTS, 4, 0xffn);
    await p.faultState("serviced while masked");
    await p.write(Reg.FECTL, 4, 0n);
    await p.faultState("unmasked after service");
  });

  // ---- caching differences, explained by departures ----

  differential("a page mapped after a not-present fault, without invalidation", async (p, config) => {
    const { root, levels } = await mapOnePage(p, { iova: 0x4000n, config });
    const page = p.tables.pages.page();
    await p.dma("not present", { sid: EDU, iova: 0x9000n, length: 8, direction: "toDevice" });
    await p.write(FRCD_HI + 4, 4, F_BIT_DWORD);
    await p.write(Reg.FSTS, 4, 0xffn);
    await p.tables.map(root, levels, 0x9000n, page);
    await p.dma("mapped, not invalidated", { sid: EDU, iova: 0x9000n, length: 8, direction: "toDevice" });
    await p.faultState();
  });

  differential("write to a read-only page after a cached read", async (p, config) => {
    const { data } = await mapOnePage(p, { iova: 0x4000n, config, write: false });
    await p.dma("read (cached)", { sid: EDU, iova: 0x4000n, length: 8, direction: "toDevice" });
    await p.dma("write", { sid: EDU, iova: 0x4100n, length: 8, direction: "toMemory" });
    await p.memory("page", data + 0x100n, 8);
    await p.faultState();
  });
});

async function translationScenario(p: Probe, config: MachineConfig, levels: number): Promise<void> {
  const t = p.tables;
  const root = await enableTranslation(p, { config, levels });
  const iovas = [0x0n, 0x1000n, 0x20_3000n, 0x4000_5000n];
  if (levels === 4) iovas.push(0x80_0000_6000n, 0x7f_ffff_f000n);
  const pages: bigint[] = [];
  for (const [i, iova] of iovas.entries()) {
    const page = t.pages.page();
    pages.push(page);
    await fillPattern(p, page, i + 1);
    await t.map(root, levels, iova, page);
  }
  for (const [i, iova] of iovas.entries()) {
    await p.dma(`read page ${i}`, { sid: EDU, iova: iova + 0x10n, length: 256, direction: "toDevice", bufferOffset: 0 });
    const dest = iovas[(i + 1) % iovas.length]! + 0x800n;
    await p.dma(`write page ${i}`, { sid: EDU, iova: dest, length: 256, direction: "toMemory", bufferOffset: 0 });
  }
  for (const [i, page] of pages.entries()) await p.memory(`page ${i} bytes`, page + 0x800n, 256);
  // One DMA spanning two mapped pages.
  await p.dma("4080 bytes across two pages, read", { sid: EDU, iova: 0x800n, length: 4080, direction: "toDevice" });
  await p.dma("4080 bytes across two pages, write", { sid: EDU, iova: 0x20_3000n, length: 4080, direction: "toMemory" });
  await p.memory("page 2 after", pages[2]!, 4096);
  await p.faultState();
}

describe("DEPARTURES table", () => {
  it("has unique ids, a reason and a spec section for each entry", () => {
    const ids = DEPARTURES.map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const d of DEPARTURES) {
      expect(d.reason.length, d.id).toBeGreaterThan(20);
      expect(d.spec, d.id).toMatch(/^§\d/);
    }
  });
});
