/**
 * The published package, as a user gets it: `npm pack` (which runs `prepack`, i.e. `npm run build`)
 * into a temporary directory, the tarball installed into a fresh project without the registry
 * (v86 comes from this repository's node_modules through a `file:` dependency), then
 *  - every entry of the `exports` map imported by plain `node` (compiled JavaScript, no tsx),
 *  - a small consumer type-checked by `tsc` against the shipped .d.ts (no @types/node, lib check on),
 *  - the device model bundled for the browser by esbuild: no `node:` import, and the bundle run
 *    to translate one DMA through tables it builds itself; the devices, the guest driver and
 *    vfio bundled the same way; `v86-vtd/v86` too (v86 left to the page), the bundle run to
 *    attach the unit to a V86 it creates from v86.wasm's bytes and read the unit's registers
 *    through the guest's memory bus (Node-only reading of v86.wasm is `v86-vtd/v86/node`'s);
 *  - the README's "add the vIOMMU to your own v86" snippet, run verbatim against the installed
 *    package: SeaBIOS boots and puts the unit's DMAR into the ACPI tables it builds.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "..");
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string }[];
}

interface Manifest {
  name: string;
  version?: string;
  private?: boolean;
  exports: Record<string, string | { types: string; default: string }>;
  files?: string[];
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  scripts: Record<string, string>;
}

const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Manifest;

/** What each entry must export (a few names each, with their `typeof`, checked by plain node). */
const F = "function";
const ENTRIES: Record<string, Record<string, string>> = {
  "v86-vtd": { VtdDevice: F, GuestRam: F, IommuNotifiers: F, FaultReason: "object", DMA_ABORT: "number" },
  "v86-vtd/v86": {
    attachVtd: F, vtdWasm: F, compilePatchedV86: F, VTD_EVENTS: "object", Machine: F, installPlatform: F, runMultibootGuest: F,
    V86DriverPlatform: F, patchClflush: F, VTD_UNIT_BASE: "number", patchedV86Module: "undefined", readV86Wasm: "undefined",
  },
  "v86-vtd/v86/node": { attachVtd: F, vtdWasm: F, runMultibootGuest: F, patchedV86Module: F, readV86Wasm: F },
  "v86-vtd/guest-driver": { VtdDriver: F, Domain: F, InProcessPlatform: F, parseDmar: F },
  "v86-vtd/vfio": { assignDevice: F, HostIommu: F, AssignedDevice: F },
  "v86-vtd/devices": { EduDevice: F, VirtioBlkDevice: F, PciConfigSpace: F, busAddress: F },
};

let work: string;
let app: string;
let packed: PackResult;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "v86-vtd-pack-"));
  app = join(work, "app");
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", work], { cwd: ROOT, maxBuffer: 64 << 20 });
  [packed] = JSON.parse(stdout) as PackResult[];
  // A fresh project: the tarball, and v86 (the optional peer the v86 entry needs) copied from this
  // repository's node_modules (--install-links: a real copy, as from the registry, not a link).
  await run("mkdir", [app]);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({
      name: "v86-vtd-consumer",
      version: "1.0.0",
      private: true,
      type: "module",
      dependencies: { v86: `file:${join(ROOT, "node_modules", "v86")}`, "v86-vtd": `file:${join(work, packed.filename)}` },
    }),
  );
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", "--no-package-lock", "--no-update-notifier", "--install-links"], { cwd: app });
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the package manifest", () => {
  it("is publishable, versioned, built by prepack, and names v86 as its peer", () => {
    expect(manifest.private).toBeUndefined();
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(manifest.scripts.prepack).toContain("npm run build");
    expect(manifest.peerDependencies?.v86).toBe(manifest.devDependencies?.v86);
    expect(Object.keys(manifest.exports).filter((key) => key !== "./package.json").sort()).toEqual(
      [".", "./devices", "./guest-driver", "./v86", "./v86/node", "./vfio"],
    );
  });
});

describe("the tarball", () => {
  it("holds compiled JavaScript and declarations, and nothing a user does not need", () => {
    const paths = packed.files.map((file) => file.path);
    for (const target of Object.values(manifest.exports)) {
      if (typeof target === "string") continue;
      expect(paths).toContain(target.default.replace(/^\.\//, ""));
      expect(paths).toContain(target.types.replace(/^\.\//, ""));
    }
    const unexpected = paths.filter((path) => !(path === "package.json" || path === "README.md" || path === "LICENSE" || /^dist\/.+\.(js|d\.ts)$/.test(path)));
    expect(unexpected).toEqual([]);
    // The BSD-2-Clause notice travels with the binaries.
    expect(paths).toContain("LICENSE");
    expect(paths.filter((path) => /\.test\.|^dist\/(cli|linux|main)/.test(path))).toEqual([]);
    // Every declaration has its module, and no TypeScript source is shipped.
    for (const path of paths.filter((p) => p.endsWith(".d.ts"))) expect(paths).toContain(path.replace(/\.d\.ts$/, ".js"));
    expect(paths.filter((path) => path.endsWith(".ts") && !path.endsWith(".d.ts"))).toEqual([]);
    console.log(`${packed.filename}: ${packed.size} bytes packed, ${packed.unpackedSize} unpacked, ${packed.entryCount} files`);
  });
});

describe("installed into a fresh project", () => {
  it.each(Object.entries(ENTRIES))("plain node imports %s", async (entry, names) => {
    const script = `const m = await import(${JSON.stringify(entry)}); console.log(JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]))));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: app });
    const exported = JSON.parse(stdout) as Record<string, string>;
    for (const [name, type] of Object.entries(names)) expect(exported[name] ?? "undefined", `${entry} exports ${name}`).toBe(type);
  });

  it("type-checks a consumer against the shipped declarations", async () => {
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true,
          skipLibCheck: false, types: [],
        },
        files: ["consumer.ts"],
      }),
    );
    writeFileSync(
      join(app, "consumer.ts"),
      `import { GuestRam, VtdDevice, FaultReason, type DmaResult, type TraceEvent } from "v86-vtd";
import { Machine, installPlatform, runMultibootGuest, V86DriverPlatform, attachVtd, vtdWasm, type MachineOptions, type RunGuestResult, type VtdAttachment } from "v86-vtd/v86";
import { patchedV86Module } from "v86-vtd/v86/node";
import { VtdDriver, InProcessPlatform, type Platform } from "v86-vtd/guest-driver";
import { assignDevice, HostIommu } from "v86-vtd/vfio";
import { EduDevice, VirtioBlkDevice, type PciFunctionPort } from "v86-vtd/devices";

const unit = new VtdDevice({ memory: new GuestRam(1 << 20), cachingMode: true });
const result: DmaResult = unit.dmaRead(0x20, 0x4000_0000n, new Uint8Array(4));
const reason: FaultReason = FaultReason.RootEntryNotPresent;
const gsts: bigint = unit.readRegister(0x1c, 4);
unit.trace.subscribe((event: TraceEvent) => void event);
// @ts-expect-error: register offsets are numbers (types that were \`any\` would let this through)
unit.readRegister("0x1c", 4);
const options: Partial<MachineOptions> = { memoryBytes: 64 << 20 };
type Run = Promise<RunGuestResult>;
const start: (o: Parameters<typeof runMultibootGuest>[0]) => Run = runMultibootGuest;
const attach: (emulator: Parameters<typeof attachVtd>[0]) => VtdAttachment = (emulator) => attachVtd(emulator, { cachingMode: true, acpi: "fw_cfg" });
export type Uses = [typeof Machine, typeof installPlatform, typeof V86DriverPlatform, typeof VtdDriver, typeof InProcessPlatform,
  Platform, typeof assignDevice, typeof HostIommu, typeof EduDevice, typeof VirtioBlkDevice, PciFunctionPort, typeof vtdWasm, typeof patchedV86Module, typeof attach];
export { result, reason, gsts, options, start };
`,
    );
    const outcome = await run(process.execPath, [TSC, "-p", "."], { cwd: app }).then(
      () => "",
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(outcome).toBe("");
  });

  it("bundles the device model for the browser without node: imports, and the bundle translates", async () => {
    writeFileSync(
      join(app, "browser.js"),
      `import { GuestRam, VtdDevice } from "v86-vtd";
// One device (requester id 00:04.0) with IOVA 0x40000000 mapped read-only to 0x200000, 3-level tables.
const ram = new GuestRam(4 << 20);
const put64 = (address, value) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, value, true); ram.write(address, b); };
put64(0x10000n, 0x11000n | 1n);                                  // root entry, bus 0: context table, present
put64(0x11000n + 0x20n * 16n, 0x12000n | 1n);                    // context entry 04.0: second-level table, present
put64(0x11000n + 0x20n * 16n + 8n, 1n | (1n << 8n));             // AW = 39-bit, domain 1
put64(0x12000n + 8n, 0x13000n | 3n);                             // level 3, index 1 (1 GiB)
put64(0x13000n, 0x14000n | 3n);                                  // level 2, index 0
put64(0x14000n, 0x200000n | 1n);                                 // level 1, index 0: read only
ram.write(0x200000n, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
const unit = new VtdDevice({ memory: ram });
unit.writeRegister(0x20, 8, 0x10000n);                           // RTADDR
unit.writeRegister(0x18, 4, 1n << 30n);                          // GCMD.SRTP
unit.writeRegister(0x18, 4, 1n << 31n);                          // GCMD.TE
const into = new Uint8Array(4);
const read = unit.dmaRead(0x20, 0x4000_0000n, into);
const write = unit.dmaWrite(0x20, 0x4000_0000n, new Uint8Array(4));
const unmapped = unit.dmaRead(0x20, 0x4000_1000n, new Uint8Array(4));
console.log(JSON.stringify({ te: Number(unit.readRegister(0x1c, 4) >> 31n), read: read.ok, bytes: [...into], write: write.ok, unmapped: unmapped.ok }));
`,
    );
    const bundled = await build({
      absWorkingDir: app,
      entryPoints: ["browser.js"],
      bundle: true,
      platform: "browser",
      format: "esm",
      outfile: join(app, "bundle.js"),
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(bundled.metafile.inputs);
    expect(inputs.some((input) => input.includes("node_modules/v86-vtd/dist/vtd-device/"))).toBe(true);
    expect(inputs.filter((input) => input.startsWith("node:") || !/^(browser\.js|node_modules\/v86-vtd\/dist\/(vtd-device|spec)\/)/.test(input))).toEqual([]);
    const text = readFileSync(join(app, "bundle.js"), "utf8");
    expect(text).not.toMatch(/["']node:/);
    const { stdout } = await run(process.execPath, [join(app, "bundle.js")], { cwd: app });
    expect(JSON.parse(stdout)).toEqual({ te: 1, read: true, bytes: [0xde, 0xad, 0xbe, 0xef], write: false, unmapped: false });
  });

  it("bundles the other platform-neutral entries (devices, guest driver, vfio) for the browser too", async () => {
    writeFileSync(
      join(app, "neutral.js"),
      `import * as devices from "v86-vtd/devices";\nimport * as driver from "v86-vtd/guest-driver";\nimport * as vfio from "v86-vtd/vfio";\n` +
        `console.log(typeof devices.EduDevice, typeof driver.VtdDriver, typeof vfio.assignDevice);\n`,
    );
    const bundled = await build({
      absWorkingDir: app, entryPoints: ["neutral.js"], bundle: true, platform: "browser", format: "esm",
      outfile: join(app, "neutral-bundle.js"), metafile: true, logLevel: "silent",
    });
    expect(Object.keys(bundled.metafile.inputs).filter((input) => input !== "neutral.js" && !input.startsWith("node_modules/v86-vtd/dist/"))).toEqual([]);
    expect(readFileSync(join(app, "neutral-bundle.js"), "utf8")).not.toMatch(/["']node:/);
    const { stdout } = await run(process.execPath, [join(app, "neutral-bundle.js")], { cwd: app });
    expect(stdout.trim()).toBe("function function function");
  });

  it("bundles v86-vtd/v86 for the browser without node: imports, and the bundle attaches the unit to a V86", async () => {
    writeFileSync(
      join(app, "page.js"),
      `import { V86 } from "v86";
import { attachVtd, compilePatchedV86, idleGuestImage, vtdWasm, VTD_UNIT_BASE } from "v86-vtd/v86";
// What a page does with the bytes it fetched from v86.wasm: a V86 of its own, the unit attached.
export async function boot(v86Wasm) {
  const emulator = new V86({
    wasm_fn: vtdWasm(await compilePatchedV86(v86Wasm)), memory_size: 32 << 20, vga_memory_size: 2 << 20, acpi: true, autostart: false,
    multiboot: { buffer: idleGuestImage().slice().buffer }, disable_keyboard: true, disable_mouse: true, disable_speaker: true,
  });
  await new Promise((resolve) => emulator.add_listener("emulator-loaded", resolve));
  const vtd = attachVtd(emulator);
  const cpu = emulator.v86.cpu;
  const ver = cpu.io.mmap_read32 ? cpu.io.mmap_read32(VTD_UNIT_BASE) : cpu.memory_map_read32[VTD_UNIT_BASE >>> 17](VTD_UNIT_BASE);
  const result = { ver, acpi: vtd.acpi, edu: typeof vtd.edu.readMmio, dmar: String.fromCharCode(...vtd.dmar.subarray(0, 4)) };
  vtd.detach();
  result.detached = cpu.memory_map_read32[VTD_UNIT_BASE >>> 17](VTD_UNIT_BASE);
  await emulator.destroy();
  return result;
}
`,
    );
    const bundled = await build({
      absWorkingDir: app, entryPoints: ["page.js"], bundle: true, platform: "browser", format: "esm",
      // v86 is the page's own (it loads libv86 itself); everything of ours goes into the bundle.
      external: ["v86"], outfile: join(app, "page-bundle.js"), metafile: true, logLevel: "silent",
    });
    const inputs = Object.keys(bundled.metafile.inputs);
    expect(inputs.some((input) => input.includes("node_modules/v86-vtd/dist/v86/attach.js"))).toBe(true);
    expect(inputs.filter((input) => input !== "page.js" && !input.startsWith("node_modules/v86-vtd/dist/"))).toEqual([]);
    const text = readFileSync(join(app, "page-bundle.js"), "utf8");
    expect(text).not.toMatch(/["']node:/);
    expect([...new Set([...text.matchAll(/from\s*["']([^"']+)["']/g)].map((m) => m[1]))]).toEqual(["v86"]);
    const harness = `import { readFileSync } from "node:fs"; import { createRequire } from "node:module";
import { boot } from "./page-bundle.js";
const wasm = readFileSync(createRequire(import.meta.url).resolve("v86/build/v86.wasm"));
console.log(JSON.stringify(await boot(new Uint8Array(wasm)))); process.exit(0);`;
    writeFileSync(join(app, "page-harness.mjs"), harness);
    const { stdout } = await run(process.execPath, [join(app, "page-harness.mjs")], { cwd: app });
    expect(JSON.parse(stdout)).toEqual({ ver: 0x10, acpi: "ram", edu: "function", dmar: "DMAR", detached: -1 });
  });

  const biosFiles = ["/usr/share/seabios/bios.bin", "/usr/share/seabios/vgabios-stdvga.bin"];
  it.skipIf(!biosFiles.every((file) => existsSync(file)))(
    "runs the README's snippet as written: SeaBIOS boots with the unit attached and puts its DMAR in the ACPI tables (needs Debian's seabios)",
    async () => {
      const readme = readFileSync(join(ROOT, "README.md"), "utf8");
      const snippet = /<!-- attach-snippet -->\s*```js\n([\s\S]*?)```/.exec(readme)?.[1];
      expect(snippet, "README.md has the attach snippet after <!-- attach-snippet -->").toBeDefined();
      // After the snippet, as written: let SeaBIOS run, then look for the DMAR in the RSDT it built.
      const check = `
await new Promise((resolve) => setTimeout(resolve, 4000));
const cpu = emulator.v86.cpu;
const low = cpu.read_blob(0xe0000, 0x20000);
let rsdp = -1;
for (let at = 0; at < low.length; at += 16) if (String.fromCharCode(...low.subarray(at, at + 8)) === "RSD PTR ") { rsdp = at; break; }
const u32 = (bytes, at) => bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24) >>> 0;
const rsdt = u32(low, rsdp + 16) >>> 0;
const header = cpu.read_blob(rsdt, 36);
const length = u32(header, 4) >>> 0;
const entries = cpu.read_blob(rsdt + 36, length - 36);
const tables = [];
for (let at = 0; at < entries.length; at += 4) tables.push(String.fromCharCode(...cpu.read_blob(u32(entries, at) >>> 0, 4)));
console.log(JSON.stringify({ rsdp: rsdp >= 0, tables, ver: cpu.memory_map_read32[0xfed90000 >>> 17](0xfed90000) }));
await emulator.destroy();
process.exit(0);
`;
      writeFileSync(join(app, "readme-snippet.mjs"), snippet + check);
      const { stdout } = await run(process.execPath, [join(app, "readme-snippet.mjs")], { cwd: app, timeout: 60_000 });
      const seen = JSON.parse(stdout.trim().split("\n").pop()!) as { rsdp: boolean; tables: string[]; ver: number };
      expect(seen.rsdp).toBe(true);
      expect(seen.tables).toContain("DMAR");
      expect(seen.ver).toBe(0x10);
    },
    90_000,
  );
});
