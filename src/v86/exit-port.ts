/**
 * Port 0xF4 as the guest's exit port, like QEMU's isa-debug-exit (iobase 0xF4): the value written
 * is the guest's exit code. v86 keeps its own handlers there for its kvm-unit-tests support (a
 * write throws, a 32-bit read reloads the multiboot kernel); both are replaced.
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
  io.register_read(EXIT_PORT, owner, () => 0xff, () => 0xffff, () => -1);
}
