/**
 * The QEMU 10.0 differential in scalable mode (issue 17): intel-iommu with x-scalable-mode=on
 * (and x-flts, x-pasid-mode) against our unit with scalableMode (firstStage, pasidBits 1).
 * Register file first: CAP/ECAP and every register's reset value and write rule. Skipped without
 * QEMU (REQUIRE_QEMU=1 makes that a failure), as the legacy differential.
 */
import { Reg } from "../../src/spec/index.ts";
import { QEMU_ABORTING_QWORD_WRITES, describeDifferential, type MachineConfig } from "./oracle.ts";

const CONFIGS: MachineConfig[] = [
  { awBits: 48, cachingMode: false, interruptRemapping: true, scalable: { firstStage: false, pasid: false } },
  { awBits: 39, cachingMode: true, interruptRemapping: false, scalable: { firstStage: false, pasid: true } },
  { awBits: 48, cachingMode: false, interruptRemapping: true, scalable: { firstStage: true, pasid: true } },
];

/** The register file QEMU implements: offsets 0x00..0x22F. */
const REGISTER_FILE_END = 0x230;

describeDifferential("QEMU 10.0 vs ours, scalable mode", CONFIGS, (differential) => {
  differential("CAP and ECAP", async (p) => {
    await p.read("CAP", Reg.CAP, 8);
    await p.read("ECAP", Reg.ECAP, 8);
  });

  differential("reset values of every register, in dwords and qwords", async (p) => {
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 4) await p.read(`dword 0x${offset.toString(16)}`, offset, 4);
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 8) await p.read(`qword 0x${offset.toString(16)}`, offset, 8);
  });

  differential("all-ones then all-zeros dword writes to every offset (GCMD apart)", async (p) => {
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 4) {
      if (offset === Reg.GCMD) continue;
      const name = `dword 0x${offset.toString(16)}`;
      await p.write(offset, 4, 0xffff_ffffn);
      await p.read(`${name} after ones`, offset, 4);
      await p.write(offset, 4, 0n);
      await p.read(`${name} after zeros`, offset, 4);
    }
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 8) await p.read(`final qword 0x${offset.toString(16)}`, offset, 8);
  });

  differential("all-ones then all-zeros qword writes to every offset (GCMD and QEMU's aborting ones apart)", async (p) => {
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 8) {
      if (offset === Reg.GCMD || QEMU_ABORTING_QWORD_WRITES.includes(offset)) continue;
      const name = `qword 0x${offset.toString(16)}`;
      await p.write(offset, 8, 0xffff_ffff_ffff_ffffn);
      await p.read(`${name} after ones`, offset, 8);
      await p.write(offset, 8, 0n);
      await p.read(`${name} after zeros`, offset, 8);
    }
    for (let offset = 0; offset < REGISTER_FILE_END; offset += 4) await p.read(`final dword 0x${offset.toString(16)}`, offset, 4);
  });

  differential("RTADDR keeps TTM as written (01 scalable, 11 abort-DMA, 10 reserved)", async (p) => {
    for (const ttm of [1n, 2n, 3n, 0n]) {
      await p.write(Reg.RTADDR, 8, 0x20_0000n | (ttm << 10n));
      await p.read(`RTADDR with TTM ${ttm}`, Reg.RTADDR, 8);
    }
  });
});
