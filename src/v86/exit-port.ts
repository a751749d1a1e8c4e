/**
 * Port 0xF4 as the guest's exit port, like QEMU's isa-debug-exit (iobase 0xF4): the value written
 * is the guest's exit code. v86 keeps its own handlers there: a write throws (replaced here); a
 * 32-bit read is how its option ROM asks for the multiboot kernel when SeaBIOS boots one (kept, or
 * a multiboot guest behind SeaBIOS would never start). isa-debug-exit has no read side either.
 */
import type { V86Io } from "./internals.ts";

export const EXIT_PORT = 0xf4;

export function installExitPort(io: V86Io, onExit: (code: number) => void): void {
  const owner = { name: "exit port" };
  io.register_write(
    EXIT_PORT,
    owner,
    (value) => onExit(value & 0xff),
    (value) => onExit(value & 0xffff),
    (value) => onExit(value >>> 0),
  );
}
