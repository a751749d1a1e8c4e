/**
 * `npm run build:demo`: the demo site as a static folder (build/demo) that any static host can
 * serve. The page (demo/main.ts) is bundled for the browser with esbuild; v86.wasm comes from the
 * installed v86 package unchanged (the page patches CLFLUSH in memory, as Machine needs); the C
 * test guest is built as `npm start` builds it (firmware/build.ts) and copied beside the page.
 * When `npm run build:linux` has built the Linux guest and Debian's SeaBIOS is installed, the
 * bzImage, the initramfs and SeaBIOS go in too (guests/index.json says whether they did, and why
 * not). Nothing runs on a server: the page fetches these files and boots the guest itself.
 *
 *   npm run build:demo [-- --out DIR]
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { ensureFirmware } from "../firmware/build.ts";
import { ensureLinuxGuest, linuxGuestReadiness } from "../firmware/linux/build.ts";
import { SEABIOS, VGA_BIOS } from "../src/linux/boot.ts";
import type { GuestManifest } from "./site-files.ts";
import { SITE_FILES } from "./site-files.ts";

const DEMO_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(DEMO_DIR, "..");
export const DEMO_BUILD_DIR = join(ROOT, "build", "demo");

/**
 * libv86.mjs reaches for these only when it runs in Node (behind a check of `process`); in the
 * page they are never loaded, so they stay outside the bundle.
 */
const NODE_ONLY_IMPORTS = ["fs", "node:fs/promises", "perf_hooks", "crypto", "node:crypto"];

export interface SiteSummary {
  directory: string;
  /** Every file of the site and its size in bytes. */
  files: { path: string; bytes: number }[];
  bytes: number;
}

function listFiles(directory: string, prefix = ""): { path: string; bytes: number }[] {
  const out: { path: string; bytes: number }[] = [];
  for (const name of readdirSync(directory).sort()) {
    const full = join(directory, name);
    const path = prefix ? `${prefix}/${name}` : name;
    const stat = statSync(full);
    if (stat.isDirectory()) out.push(...listFiles(full, path));
    else out.push({ path, bytes: stat.size });
  }
  return out;
}

/** Builds the site into `out` (emptied first); returns what it wrote. */
export async function buildDemo(out = DEMO_BUILD_DIR): Promise<SiteSummary> {
  const guest = await ensureFirmware();
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "guests"), { recursive: true });
  await build({
    entryPoints: [join(DEMO_DIR, "main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    external: NODE_ONLY_IMPORTS,
    outfile: join(out, "main.js"),
    logLevel: "warning",
  });
  copyFileSync(join(DEMO_DIR, "index.html"), join(out, "index.html"));
  const v86Directory = dirname(createRequire(import.meta.url).resolve("v86/package.json"));
  copyFileSync(join(v86Directory, "build", "v86.wasm"), join(out, SITE_FILES.wasm));
  copyFileSync(guest, join(out, SITE_FILES.guest));
  const manifest: GuestManifest = { linux: await copyLinuxGuest(out) };
  writeFileSync(join(out, SITE_FILES.manifest), `${JSON.stringify(manifest)}\n`);
  const files = listFiles(out);
  return { directory: out, files, bytes: files.reduce((sum, f) => sum + f.bytes, 0) };
}

/** Copies the Linux guest and SeaBIOS into the site when they are built and installed; else says why not. */
async function copyLinuxGuest(out: string): Promise<true | string> {
  const readiness = linuxGuestReadiness();
  if (!readiness.ready) return readiness.reason;
  for (const file of [SEABIOS, VGA_BIOS]) if (!existsSync(file)) return `${file} not found (apt-get install seabios)`;
  const linux = await ensureLinuxGuest({ log: () => {} });
  mkdirSync(join(out, "guests", "linux"), { recursive: true });
  copyFileSync(linux.bzImage, join(out, SITE_FILES.linux.bzImage));
  copyFileSync(linux.initrd, join(out, SITE_FILES.linux.initrd));
  copyFileSync(SEABIOS, join(out, SITE_FILES.linux.bios));
  copyFileSync(VGA_BIOS, join(out, SITE_FILES.linux.vgaBios));
  return true;
}

function outOption(argv: string[]): string {
  const at = argv.indexOf("--out");
  if (at < 0) return DEMO_BUILD_DIR;
  const value = argv[at + 1];
  if (!value || value.startsWith("--")) throw new Error("option --out: expected a directory");
  return resolve(value);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  Promise.resolve()
    .then(() => buildDemo(outOption(process.argv.slice(2))))
    .then(
      (site) => console.log(`demo site: ${site.directory} (${site.files.length} files, ${(site.bytes / 1024).toFixed(0)} KiB)`),
      (error: unknown) => {
        console.error(error instanceof Error ? error.message : error);
        process.exit(1);
      },
    );
}
