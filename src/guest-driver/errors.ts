/** Errors the driver's API throws: a code to test against and a message that says why. */
export type DriverErrorCode =
  | "no-unit"
  | "unit-rejected"
  | "bad-argument"
  | "unaligned"
  | "overlap"
  | "not-mapped"
  | "unknown-device"
  | "already-attached"
  | "not-attached"
  | "unsupported"
  | "out-of-space"
  | "hardware-timeout"
  | "invalidation-failed";

export class VtdDriverError extends Error {
  constructor(readonly code: DriverErrorCode, message: string) {
    super(message);
    this.name = "VtdDriverError";
  }
}

export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** bus:device.function of a source-id, as lspci prints it. */
export function bdf(sid: number): string {
  const bus = (sid >> 8) & 0xff, dev = (sid >> 3) & 0x1f, fn = sid & 7;
  return `${bus.toString(16).padStart(2, "0")}:${dev.toString(16).padStart(2, "0")}.${fn}`;
}
