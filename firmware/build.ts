/**
 * Builds the bare-metal VT-d test guest (build/firmware/vtd-test.elf) with the machine's gcc and
 * ld. The header with every VT-d number is generated from src/spec first (gen-header.ts).
 * Rebuilds only when an input changed: a hash of the sources, src/spec and the flags is kept
 * beside the ELF. Builds go to a private directory and are renamed into place, so concurrent
 * callers (parallel test files) never see a half-written ELF.
 *
 *   npm run build:firmware [-- --force]
 */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { generateHeader } from "./gen-header.ts";

const FIRMWARE_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(FIRMWARE_DIR, "..");
const SPEC_DIR = join(ROOT, "src", "spec");
export const FIRMWARE_BUILD_DIR = join(ROOT, "build", "firmware");
export const FIRMWARE_ELF = join(FIRMWARE_BUILD_DIR, "vtd-test.elf");
const HASH_FILE = `${FIRMWARE_ELF}.inputs-sha256`;

const CFLAGS = [
  "-m32",
  "-ffreestanding",
  "-fno-pic",
  "-fno-stack-protector",
  "-nostdlib",
  "-O2",
  "-std=gnu11",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-fno-asynchronous-unwind-tables",
  "-mno-sse",
  "-mno-mmx",
  "--param=min-pagesize=0", // the guest reads low fixed addresses (EBDA pointer, BIOS area)
];
const LDFLAGS = ["-m", "elf_i386", "-nostdlib", "-z", "max-page-size=0x1000", "-z", "noexecstack", "--build-id=none"];

/** Guest sources: every C, header and assembly file directly in firmware/ (firmware/linux is separate). */
function guestSources(): string[] {
  return readdirSync(FIRMWARE_DIR)
    .filter((name) => /\.(c|h|S|ld)$/.test(name))
    .sort()
    .map((name) => join(FIRMWARE_DIR, name));
}

function inputsHash(): string {
  const files = [
    ...guestSources(),
    join(FIRMWARE_DIR, "gen-header.ts"),
    join(FIRMWARE_DIR, "build.ts"),
    ...readdirSync(SPEC_DIR)
      .filter((name) => name.endsWith(".ts"))
      .sort()
      .map((name) => join(SPEC_DIR, name)),
  ];
  const hash = createHash("sha256");
  hash.update(JSON.stringify([CFLAGS, LDFLAGS]));
  for (const file of files) {
    hash.update(relative(ROOT, file));
    hash.update("\0");
    hash.update(readFileSync(file));
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** Why the guest cannot be built here (gcc or ld missing), or null. */
export function firmwareToolsMissing(): string | null {
  for (const tool of ["gcc", "ld"]) {
    const probe = spawnSync(tool, ["--version"], { encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
      return (
        `build:firmware needs \`${tool}\` on PATH to build the bare-metal test guest ` +
        `(Debian/Ubuntu: apt-get install gcc binutils). ${probe.error?.message ?? probe.stderr}`
      ).trim();
    }
  }
  return null;
}

function run(tool: string, args: string[]): void {
  const result = spawnSync(tool, args, { encoding: "utf8", cwd: ROOT });
  if (result.error || result.status !== 0) {
    throw new Error(`build:firmware: ${tool} ${args.join(" ")}\n${result.error?.message ?? ""}${result.stdout}${result.stderr}`);
  }
}

function build(hash: string): void {
  const missing = firmwareToolsMissing();
  if (missing) throw new Error(missing);
  mkdirSync(FIRMWARE_BUILD_DIR, { recursive: true });
  const work = mkdtempSync(join(FIRMWARE_BUILD_DIR, "tmp-"));
  try {
    writeFileSync(join(work, "vtd-spec.h"), generateHeader());
    const objects: string[] = [];
    for (const source of guestSources().filter((s) => /\.(c|S)$/.test(s))) {
      const object = join(work, `${relative(FIRMWARE_DIR, source).replace(/\.[cS]$/, "")}.o`);
      run("gcc", [...CFLAGS, "-I", work, "-I", FIRMWARE_DIR, "-c", source, "-o", object]);
      objects.push(object);
    }
    const elf = join(work, "vtd-test.elf");
    run("ld", [...LDFLAGS, "-T", join(FIRMWARE_DIR, "link.ld"), "-o", elf, ...objects]);
    renameSync(join(work, "vtd-spec.h"), join(FIRMWARE_BUILD_DIR, "vtd-spec.h"));
    renameSync(elf, FIRMWARE_ELF);
    writeFileSync(join(work, "hash"), hash);
    renameSync(join(work, "hash"), HASH_FILE);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Builds the guest if any input changed; returns the ELF's path. */
export async function ensureFirmware(options: { force?: boolean } = {}): Promise<string> {
  const hash = inputsHash();
  const current = existsSync(FIRMWARE_ELF) && existsSync(HASH_FILE) && readFileSync(HASH_FILE, "utf8") === hash;
  if (options.force || !current) build(hash);
  return FIRMWARE_ELF;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href && /build\.ts$/.test(process.argv[1])) {
  ensureFirmware({ force: process.argv.includes("--force") }).then(
    (elf) => console.log(elf),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}
