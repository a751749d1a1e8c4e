/**
 * Multiboot images for whole-machine tests: the C platform guest built with the host's gcc, and
 * hand-assembled flat images (the header's address fields, no ELF) for tiny behaviours.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const guests = join(dirname(fileURLToPath(import.meta.url)), "..", "guests");

export function haveGcc32(): boolean {
  try {
    execFileSync("gcc", ["--version"], { stdio: "ignore" });
    execFileSync("ld", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Compiles test/guests/<name>.c into a multiboot ELF (gcc -m32 -ffreestanding, ld -m elf_i386). */
export function buildCGuest(name: string): Uint8Array {
  const work = mkdtempSync(join(tmpdir(), "v86-guest-"));
  try {
    const object = join(work, `${name}.o`);
    const elf = join(work, `${name}.elf`);
    execFileSync("gcc", [
      "-m32", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie", "-fno-stack-protector",
      "-fno-asynchronous-unwind-tables", "-O2", "-Wall", "-Werror", "-c", join(guests, `${name}.c`), "-o", object,
    ]);
    execFileSync("ld", ["-m", "elf_i386", "-z", "noexecstack", "--no-warn-rwx-segments", "-T", join(guests, "multiboot.ld"), "-o", elf, object]);
    return new Uint8Array(readFileSync(elf));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A flat multiboot image loaded at 1 MiB whose entry point runs `code` (32-bit protected mode). */
export function flatMultibootImage(code: readonly number[]): Uint8Array {
  const load = 0x10_0000;
  const headerSize = 32;
  const image = new Uint8Array(headerSize + code.length);
  const view = new DataView(image.buffer);
  const magic = 0x1bad_b002;
  const flags = 1 << 16; // address fields valid
  view.setUint32(0, magic, true);
  view.setUint32(4, flags, true);
  view.setUint32(8, (-(magic + flags)) >>> 0, true);
  view.setUint32(12, load, true); // header_addr
  view.setUint32(16, load, true); // load_addr
  view.setUint32(20, 0, true); // load_end_addr: whole file
  view.setUint32(24, 0, true); // bss_end_addr
  view.setUint32(28, load + headerSize, true); // entry_addr
  image.set(code, headerSize);
  return image;
}

export const X86 = {
  /** jmp $ */
  spin: [0xeb, 0xfe],
  /** cli; hlt */
  cliHlt: [0xfa, 0xf4],
  /** ud2 (an exception with no IDT) */
  ud2: [0x0f, 0x0b],
  /** clflush [address] */
  clflush: (address: number) => [0x0f, 0xae, 0x3d, address & 0xff, (address >> 8) & 0xff, (address >> 16) & 0xff, address >>> 24],
  /** mov al, code; out 0xF4, al */
  exit: (code: number) => [0xb0, code & 0xff, 0xe6, 0xf4],
} as const;
