/**
 * A "newc" cpio archive (the format the kernel unpacks as an initramfs), written in memory with
 * fixed owners and times so the same inputs always give the same bytes. Documented in the
 * kernel's Documentation/driver-api/early-userspace/buffer-format.rst.
 */
export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Uint8Array; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "char"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const MAGIC = "070701";
const HEADER_BYTES = 110;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function hex8(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

export function writeCpio(entries: readonly CpioEntry[]): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  let inode = 1;
  const add = (path: string, mode: number, data: Uint8Array, rdev: [number, number] = [0, 0]) => {
    if (path.startsWith("/") || path.length === 0) throw new Error(`cpio: entry path "${path}" must be relative and non-empty`);
    const name = encoder.encode(`${path}\0`);
    const fields = [inode++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    const header = encoder.encode(MAGIC + fields.map(hex8).join(""));
    const headerAndName = new Uint8Array(pad4(HEADER_BYTES + name.length));
    headerAndName.set(header);
    headerAndName.set(name, HEADER_BYTES);
    parts.push(headerAndName);
    const body = new Uint8Array(pad4(data.length));
    body.set(data);
    parts.push(body);
  };
  for (const entry of entries) {
    switch (entry.type) {
      case "dir":
        add(entry.path, S_IFDIR | (entry.mode ?? 0o755), new Uint8Array());
        break;
      case "file":
        add(entry.path, S_IFREG | (entry.mode ?? 0o644), entry.data);
        break;
      case "symlink":
        add(entry.path, S_IFLNK | 0o777, encoder.encode(entry.target));
        break;
      case "char":
        add(entry.path, S_IFCHR | (entry.mode ?? 0o600), new Uint8Array(), [entry.major, entry.minor]);
        break;
    }
  }
  inode = 0;
  add("TRAILER!!!", 0, new Uint8Array());
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
