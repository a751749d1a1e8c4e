/**
 * Builds the Linux guest: an i386 kernel (bzImage) from Debian's `linux-source-6.1` package on
 * tinyconfig plus kernel.config, and a gzip cpio initramfs from Debian's busybox-static (i386)
 * with init.sh as /init. Results are cached outside the clone, in
 * ${XDG_CACHE_HOME:-~/.cache}/v86-vtd/:
 *   linux-source-<version>/  the extracted source (once per source package version)
 *   linux-build-<version>/   the object tree (make O=...), reused so a changed fragment rebuilds only what it must
 *   linux-<key>/bzImage      key: hash of kernel.config, this script and the source package version
 *   initramfs-<key>/initrd.img  key: hash of init.sh, cpio.ts, this script and the busybox version
 *
 *   npm run build:linux [-- --force]
 */
import { createHash } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import { availableParallelism, homedir } from "node:os";
import {
  appendFileSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { writeCpio, type CpioEntry } from "./cpio.ts";

/** This directory; from a bundle (npm run bench:linux), firmware/linux under the working directory. */
function firmwareLinuxDir(): string {
  const candidates = [dirname(fileURLToPath(import.meta.url)), join(process.cwd(), "firmware", "linux")];
  const found = candidates.find((dir) => existsSync(join(dir, "kernel.config")));
  if (!found) throw new Error(`firmware/linux/kernel.config not found (looked in ${candidates.join(", ")})`);
  return found;
}
const HERE = firmwareLinuxDir();
export const FRAGMENT_FILE = join(HERE, "kernel.config");
export const INIT_FILE = join(HERE, "init.sh");
const THIS_FILE = join(HERE, "build.ts");
const CPIO_FILE = join(HERE, "cpio.ts");

export const SOURCE_PACKAGE = "linux-source-6.1";
export const SOURCE_TARBALL = `/usr/src/${SOURCE_PACKAGE}.tar.xz`;

/** The kernel source tarball: Debian's, or $LINUX_SOURCE_TARBALL (any .tar.xz with one top directory). */
export function sourceTarball(): string {
  return process.env.LINUX_SOURCE_TARBALL || SOURCE_TARBALL;
}
export const BUSYBOX_PACKAGE = "busybox-static:i386";
/** Options whose loss makes the guest pointless; named first when they do not survive. */
export const ESSENTIAL_OPTIONS = ["CONFIG_INTEL_IOMMU", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_PCI", "CONFIG_PCI_MSI", "CONFIG_ACPI"];

export class LinuxBuildError extends Error {}

/** make's steps ("CC ...", "LD ...") for a fresh tree with kernel.config (6.1.192-2): the progress estimate. */
const FRESH_TREE_STEPS = 1480;
/** Fixed build identity, so the same inputs give the same bzImage (the kernel embeds them). */
const REPRODUCIBLE_BUILD_ENV = {
  KBUILD_BUILD_TIMESTAMP: "2025-01-01 00:00:00 UTC",
  KBUILD_BUILD_USER: "v86-vtd",
  KBUILD_BUILD_HOST: "v86-vtd",
  KBUILD_BUILD_VERSION: "1",
};

export interface LinuxGuest {
  bzImage: string;
  initrd: string;
  /** The kernel's .config after olddefconfig. */
  kernelConfig: string;
  kernelKey: string;
  initrdKey: string;
  sourceVersion: string;
}

export interface BuildOptions {
  /** Rebuild the kernel and the initramfs even when cached. */
  force?: boolean;
  /** Progress and status lines (default: stderr). */
  log?: (line: string) => void;
}

export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "v86-vtd");
}

function sha256(parts: (string | Uint8Array)[]): string {
  const hash = createHash("sha256");
  for (const part of parts) {
    hash.update(part);
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** The source's version: the installed package's (dpkg), e.g. "6.1.192-2", else the tarball's size and time. */
export function sourceVersion(): string {
  const tarball = sourceTarball();
  if (!existsSync(tarball)) {
    throw new LinuxBuildError(`missing build dependency: ${tarball} not found (Debian: apt-get install ${SOURCE_PACKAGE})`);
  }
  if (tarball === SOURCE_TARBALL) {
    const query = spawnSync("dpkg-query", ["-W", "-f=${Version}", SOURCE_PACKAGE], { encoding: "utf8" });
    if (query.status === 0 && query.stdout.trim()) return query.stdout.trim();
  }
  const stat = statSync(tarball);
  return `unpackaged-${stat.size}-${Math.floor(stat.mtimeMs)}`;
}

export function kernelKey(version: string): string {
  return sha256([readFileSync(FRAGMENT_FILE), readFileSync(THIS_FILE), version, "i386"]).slice(0, 16);
}

function kernelDir(key: string): string {
  return join(cacheRoot(), `linux-${key}`);
}

/** The cached kernel for the current inputs, or null (nothing is built). */
export function cachedKernel(): { bzImage: string; kernelConfig: string; key: string; version: string } | null {
  let version: string;
  try {
    version = sourceVersion();
  } catch {
    return null;
  }
  const key = kernelKey(version);
  const dir = kernelDir(key);
  const bzImage = join(dir, "bzImage");
  return existsSync(bzImage) ? { bzImage, kernelConfig: join(dir, "config"), key, version } : null;
}

// ---------------------------------------------------------------------------------------------
// Build dependencies

const TOOLS: [command: string, args: string[], pkg: string][] = [
  ["make", ["--version"], "make"],
  ["gcc", ["--version"], "gcc"],
  ["flex", ["--version"], "flex"],
  ["bison", ["--version"], "bison"],
  ["bc", ["--version"], "bc"],
  ["perl", ["-v"], "perl"],
  ["tar", ["--version"], "tar"],
  ["xz", ["--version"], "xz-utils"],
];
const HEADERS: [file: string, pkg: string][] = [
  ["/usr/include/libelf.h", "libelf-dev"],
  ["/usr/include/openssl/ssl.h", "libssl-dev"],
];

/** Every missing kernel build dependency, with its Debian package. */
export function missingKernelDependencies(): string[] {
  const missing: string[] = [];
  if (!existsSync(sourceTarball())) missing.push(`${sourceTarball()} (package ${SOURCE_PACKAGE})`);
  for (const [command, args, pkg] of TOOLS) {
    const probe = spawnSync(command, args, { stdio: "ignore" });
    if (probe.error) missing.push(`${command} (package ${pkg})`);
  }
  for (const [file, pkg] of HEADERS) if (!existsSync(file)) missing.push(`${file} (package ${pkg})`);
  return missing;
}

// ---------------------------------------------------------------------------------------------
// Kernel

/** One builder per object tree at a time: a lock file holding the builder's pid. */
async function withLock<T>(lockFile: string, log: (line: string) => void, body: () => Promise<T>): Promise<T> {
  let waitedSince: number | undefined;
  for (;;) {
    try {
      const fd = openSync(lockFile, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const pid = Number(readFileSync(lockFile, "utf8"));
      let alive = false;
      try {
        if (pid > 0) process.kill(pid, 0);
        alive = pid > 0;
      } catch {
        alive = false;
      }
      if (!alive) {
        rmSync(lockFile, { force: true });
        continue;
      }
      if (waitedSince === undefined) {
        waitedSince = Date.now();
        log(`[linux] waiting for the build running in process ${pid} (${lockFile})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  try {
    return await body();
  } finally {
    rmSync(lockFile, { force: true });
  }
}

function run(command: string, args: string[], cwd: string, logFile: string): void {
  appendFileSync(logFile, `$ ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, { cwd, encoding: "utf8", maxBuffer: 256 << 20, env: { ...process.env, ...REPRODUCIBLE_BUILD_ENV } });
  appendFileSync(logFile, `${result.stdout ?? ""}${result.stderr ?? ""}`);
  if (result.error || result.status !== 0) {
    throw new LinuxBuildError(`\`${command} ${args.join(" ")}\` failed (${result.error?.message ?? `exit ${result.status}`})\n${lastLines(logFile, 30)}`);
  }
}

export function lastLines(file: string, count: number): string {
  if (!existsSync(file)) return "";
  const lines = readFileSync(file, "utf8").trimEnd().split("\n");
  return `--- last ${Math.min(count, lines.length)} lines of ${file} ---\n${lines.slice(-count).join("\n")}`;
}

function extractSource(sourceDir: string, log: (line: string) => void): void {
  const marker = join(sourceDir, ".v86-vtd-extracted");
  if (existsSync(marker)) return;
  const tarball = sourceTarball();
  log(`[linux] extracting ${tarball} to ${sourceDir}`);
  const staging = `${sourceDir}.partial`;
  rmSync(staging, { recursive: true, force: true });
  rmSync(sourceDir, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const untar = spawnSync("tar", ["-xJf", tarball, "-C", staging], { encoding: "utf8" });
  if (untar.status !== 0) throw new LinuxBuildError(`extracting ${tarball} failed: ${untar.stderr || untar.error?.message}`);
  const top = readdirSync(staging);
  if (top.length !== 1) throw new LinuxBuildError(`${tarball}: expected one top directory, found ${top.join(", ")}`);
  renameSync(join(staging, top[0]!), sourceDir);
  rmSync(staging, { recursive: true, force: true });
  writeFileSync(marker, "");
}

interface FragmentLine {
  symbol: string;
  line: string;
  enabled: boolean;
}

export function parseFragment(text: string): FragmentLine[] {
  const lines: FragmentLine[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    let match = /^(CONFIG_\w+)=(.+)$/.exec(line);
    if (match) {
      lines.push({ symbol: match[1]!, line, enabled: match[2] === "y" });
      continue;
    }
    match = /^# (CONFIG_\w+) is not set$/.exec(line);
    if (match) lines.push({ symbol: match[1]!, line, enabled: false });
  }
  return lines;
}

/** Replaces or appends each fragment line in a .config text. */
export function applyFragment(config: string, fragment: FragmentLine[]): string {
  const wanted = new Map(fragment.map((f) => [f.symbol, f.line]));
  const seen = new Set<string>();
  const out = config.trimEnd().split("\n").map((line) => {
    const symbol = /^(CONFIG_\w+)=/.exec(line)?.[1] ?? /^# (CONFIG_\w+) is not set$/.exec(line)?.[1];
    const replacement = symbol === undefined ? undefined : wanted.get(symbol);
    if (symbol === undefined || replacement === undefined) return line;
    seen.add(symbol);
    return replacement;
  });
  for (const [symbol, line] of wanted) if (!seen.has(symbol)) out.push(line);
  return `${out.join("\n").trimEnd()}\n`;
}

/** Fragment lines the final .config does not honour (an option olddefconfig dropped). */
export function lostOptions(config: string, fragment: FragmentLine[]): string[] {
  const values = new Map<string, string>();
  for (const line of config.split("\n")) {
    const match = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (match) values.set(match[1]!, match[2]!);
  }
  return fragment
    .filter((f) => (f.enabled ? values.get(f.symbol) !== "y" : values.get(f.symbol) === "y"))
    .map((f) => f.symbol)
    .sort((a, b) => Number(ESSENTIAL_OPTIONS.includes(b)) - Number(ESSENTIAL_OPTIONS.includes(a)));
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/** make, with its output in the log file and a progress line (steps done, elapsed, current file). */
function makeWithProgress(args: string[], cwd: string, logFile: string, expectedSteps: number | undefined, log: (line: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    appendFileSync(logFile, `$ make ${args.join(" ")}\n`);
    const child = spawn("make", args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...REPRODUCIBLE_BUILD_ENV } });
    const started = Date.now();
    let steps = 0;
    let current = "";
    let partial = "";
    const onData = (chunk: Buffer) => {
      appendFileSync(logFile, chunk);
      const text = partial + chunk.toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        const match = /^\s{2}([A-Z0-9_]+)\s+(\S+)/.exec(line);
        if (match) {
          steps++;
          current = `${match[1]} ${match[2]}`;
        }
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const report = () => {
      const percent = expectedSteps ? ` (~${Math.min(99, Math.round((100 * steps) / expectedSteps))}%)` : "";
      log(`[linux] building: ${steps} steps${percent}, ${formatDuration(Date.now() - started)}${current ? `, at ${current}` : ""}`);
    };
    const timer = setInterval(report, process.stderr.isTTY ? 5_000 : 15_000);
    child.on("error", (error) => {
      clearInterval(timer);
      reject(new LinuxBuildError(`make could not start: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      clearInterval(timer);
      if (code === 0) {
        log(`[linux] make finished: ${steps} steps in ${formatDuration(Date.now() - started)}`);
        resolve(steps);
      } else {
        reject(new LinuxBuildError(`kernel build failed (make ${code === null ? `killed by ${signal}` : `exit ${code}`})\n${lastLines(logFile, 40)}`));
      }
    });
  });
}

async function buildKernel(version: string, key: string, force: boolean, log: (line: string) => void): Promise<{ bzImage: string; kernelConfig: string }> {
  const root = cacheRoot();
  const sourceDir = join(root, `linux-source-${version}`);
  const objectDir = join(root, `linux-build-${version}`);
  const outDir = kernelDir(key);
  const bzImageOut = join(outDir, "bzImage");
  if (!force && existsSync(bzImageOut)) return { bzImage: bzImageOut, kernelConfig: join(outDir, "config") };
  const missing = missingKernelDependencies();
  if (missing.length > 0) {
    throw new LinuxBuildError(`missing build dependency: ${missing.join(", ")}\nDebian: apt-get install ${SOURCE_PACKAGE} make gcc flex bison bc libelf-dev libssl-dev xz-utils`);
  }
  mkdirSync(root, { recursive: true });
  return withLock(join(root, `linux-build-${version}.lock`), log, async () => {
    // Another process may have built it while this one waited for the lock.
    if (!force && existsSync(bzImageOut)) return { bzImage: bzImageOut, kernelConfig: join(outDir, "config") };
    extractSource(sourceDir, log);
    mkdirSync(objectDir, { recursive: true });
    const logFile = join(objectDir, "v86-vtd-build.log");
    writeFileSync(logFile, `kernel ${key}, ${SOURCE_PACKAGE} ${version}\n`);
    const make = ["-C", sourceDir, `O=${objectDir}`, "ARCH=i386"];
    log(`[linux] configuring (tinyconfig + ${FRAGMENT_FILE}) in ${objectDir}`);
    run("make", [...make, "tinyconfig"], root, logFile);
    const fragment = parseFragment(readFileSync(FRAGMENT_FILE, "utf8"));
    const configFile = join(objectDir, ".config");
    writeFileSync(configFile, applyFragment(readFileSync(configFile, "utf8"), fragment));
    run("make", [...make, "olddefconfig"], root, logFile);
    const lost = lostOptions(readFileSync(configFile, "utf8"), fragment);
    if (lost.length > 0) {
      throw new LinuxBuildError(`the kernel configuration lost ${lost.join(", ")} after olddefconfig (a dependency is missing from ${FRAGMENT_FILE}); see ${configFile}`);
    }
    const stepsFile = join(objectDir, ".v86-vtd-steps");
    const fresh = !existsSync(join(objectDir, "vmlinux"));
    const expected = fresh ? (existsSync(stepsFile) ? Number(readFileSync(stepsFile, "utf8")) : 0) || FRESH_TREE_STEPS : undefined;
    log(`[linux] make bzImage with ${availableParallelism()} jobs${fresh ? " (a fresh tree takes about 6 minutes on 2 cores)" : ""}; log: ${logFile}`);
    const steps = await makeWithProgress([...make, `-j${availableParallelism()}`, "bzImage"], root, logFile, expected, log);
    if (fresh) writeFileSync(stepsFile, String(steps));
    const built = join(objectDir, "arch", "x86", "boot", "bzImage");
    if (!existsSync(built)) throw new LinuxBuildError(`make succeeded but ${built} is missing\n${lastLines(logFile, 20)}`);
    const staging = `${outDir}.partial-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    copyFileSync(built, join(staging, "bzImage"));
    copyFileSync(configFile, join(staging, "config"));
    writeFileSync(join(staging, "source-version"), `${version}\n`);
    rmSync(outDir, { recursive: true, force: true });
    renameSync(staging, outDir);
    log(`[linux] kernel: ${bzImageOut} (${statSync(bzImageOut).size} bytes)`);
    return { bzImage: bzImageOut, kernelConfig: join(outDir, "config") };
  });
}

// ---------------------------------------------------------------------------------------------
// Initramfs

/** Debian's busybox-static i386 package: $LINUX_BUSYBOX_DEB, one in the cache, or `apt-get download`. */
export function busyboxDeb(log: (line: string) => void, download = true): string | null {
  const fromEnv = process.env.LINUX_BUSYBOX_DEB;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new LinuxBuildError(`LINUX_BUSYBOX_DEB: ${fromEnv} does not exist`);
    return fromEnv;
  }
  const dir = join(cacheRoot(), "debs");
  const find = () => (existsSync(dir) ? readdirSync(dir).find((name) => /^busybox-static_.*_i386\.deb$/.test(name)) : undefined);
  const found = find();
  if (found) return join(dir, found);
  if (!download) return null;
  mkdirSync(dir, { recursive: true });
  log(`[linux] apt-get download ${BUSYBOX_PACKAGE} into ${dir}`);
  const fetched = spawnSync("apt-get", ["download", BUSYBOX_PACKAGE], { cwd: dir, encoding: "utf8" });
  const name = find();
  if (fetched.status !== 0 || !name) {
    throw new LinuxBuildError(
      `missing build dependency: Debian's ${BUSYBOX_PACKAGE} could not be downloaded (${(fetched.stderr || fetched.error?.message || "").trim()}). ` +
        `As root: dpkg --add-architecture i386 && apt-get update; or set LINUX_BUSYBOX_DEB to the .deb`,
    );
  }
  return join(dir, name);
}

function debField(deb: string, field: string): string {
  const result = spawnSync("dpkg-deb", ["-f", deb, field], { encoding: "utf8" });
  if (result.error) throw new LinuxBuildError(`missing build dependency: dpkg-deb (package dpkg): ${result.error.message}`);
  if (result.status !== 0) throw new LinuxBuildError(`${deb}: not a Debian package (${result.stderr.trim()})`);
  return result.stdout.trim();
}

export function initramfsKey(busyboxVersion: string): string {
  return sha256([readFileSync(INIT_FILE), readFileSync(CPIO_FILE), readFileSync(THIS_FILE), busyboxVersion]).slice(0, 16);
}

function buildInitramfs(force: boolean, log: (line: string) => void): { initrd: string; key: string } {
  const deb = busyboxDeb(log)!;
  const arch = debField(deb, "Architecture");
  if (arch !== "i386") throw new LinuxBuildError(`${deb}: architecture ${arch}, expected i386`);
  const key = initramfsKey(debField(deb, "Version"));
  const dir = join(cacheRoot(), `initramfs-${key}`);
  const initrd = join(dir, "initrd.img");
  if (!force && existsSync(initrd)) return { initrd, key };
  const unpacked = join(cacheRoot(), `busybox-${process.pid}`);
  rmSync(unpacked, { recursive: true, force: true });
  const extract = spawnSync("dpkg-deb", ["-x", deb, unpacked], { encoding: "utf8" });
  if (extract.status !== 0) throw new LinuxBuildError(`dpkg-deb -x ${deb} failed: ${extract.stderr || extract.error?.message}`);
  const busybox = readFileSync(join(unpacked, "bin", "busybox"));
  rmSync(unpacked, { recursive: true, force: true });
  const entries: CpioEntry[] = [
    ...["bin", "sbin", "dev", "proc", "sys", "tmp", "root"].map((path): CpioEntry => ({ type: "dir", path })),
    { type: "char", path: "dev/console", major: 5, minor: 1 },
    { type: "char", path: "dev/ttyS0", major: 4, minor: 64 },
    { type: "file", path: "bin/busybox", data: busybox, mode: 0o755 },
    ...["sh", "mount", "cat", "echo"].map((name): CpioEntry => ({ type: "symlink", path: `bin/${name}`, target: "busybox" })),
    { type: "file", path: "init", data: readFileSync(INIT_FILE), mode: 0o755 },
  ];
  const image = gzipSync(writeCpio(entries), { level: 9 });
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  writeFileSync(join(staging, "initrd.img"), image);
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  log(`[linux] initramfs: ${initrd} (${image.length} bytes, busybox from ${deb})`);
  return { initrd, key };
}

/** Builds what is missing and returns the guest's files. Throws LinuxBuildError with the reason. */
export async function ensureLinuxGuest(options: BuildOptions = {}): Promise<LinuxGuest> {
  const log = options.log ?? ((line: string) => console.error(line));
  const version = sourceVersion();
  const key = kernelKey(version);
  const kernel = await buildKernel(version, key, options.force ?? false, log);
  const initramfs = buildInitramfs(options.force ?? false, log);
  return { ...kernel, initrd: initramfs.initrd, kernelKey: key, initrdKey: initramfs.key, sourceVersion: version };
}

/** Whether the guest can boot without building the kernel (the initramfs is quick to make). */
export function linuxGuestReadiness(): { ready: true } | { ready: false; reason: string } {
  const kernel = cachedKernel();
  if (!kernel) return { ready: false, reason: `no Linux kernel built for the current inputs in ${cacheRoot()} (npm run build:linux)` };
  try {
    if (!process.env.LINUX_BUSYBOX_DEB && !busyboxDeb(() => {}, false)) {
      return { ready: false, reason: `Debian's ${BUSYBOX_PACKAGE} is not in ${join(cacheRoot(), "debs")} (npm run build:linux downloads it)` };
    }
  } catch (error) {
    return { ready: false, reason: (error as Error).message };
  }
  return { ready: true };
}

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((arg) => arg !== "--force");
  if (unknown.length > 0) {
    console.error(`error: unknown option ${unknown[0]}\nusage: npm run build:linux [-- --force]`);
    return 2;
  }
  try {
    const guest = await ensureLinuxGuest({ force: argv.includes("--force") });
    console.log(`bzImage ${guest.bzImage}\ninitrd  ${guest.initrd}\nconfig  ${guest.kernelConfig}`);
    return 0;
  } catch (error) {
    if (!(error instanceof LinuxBuildError)) throw error;
    console.error(`error: ${error.message}`);
    return 1;
  }
}

// Run as a script (not when imported, nor when bundled into another entry point).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && /build\.ts$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then((status) => process.exit(status));
}
