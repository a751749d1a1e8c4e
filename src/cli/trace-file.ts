/**
 * `--trace FILE` and `--trace-events PATTERN` of the main commands: the unit's trace events as
 * JSON lines (bigints as hex strings, with the unit's clock in ms as `time`), filtered by a
 * QEMU-style pattern: names or globs (`*`) separated by commas, e.g. `vtd_inv*,vtd_fault`.
 */
import { ArgumentError } from "./options.ts";
import { closeSync, openSync, writeSync } from "node:fs";
import type { TraceEvent, VtdDevice } from "../vtd-device/index.ts";

/** Every trace event type; the `satisfies` keeps it in step with TraceEvent. */
const EVENT_TYPES = {
  vtd_reg_read: true, vtd_reg_write: true, vtd_reg_ignored: true, vtd_gcmd: true, vtd_inv: true, vtd_iq_desc: true, vtd_iq_error: true,
  vtd_inv_wait: true, vtd_fault: true, vtd_iotlb_miss: true, vtd_context_miss: true, vtd_interrupt: true, vtd_ir_remap: true,
  vtd_ir_fault: true, vtd_inv_iec: true, vtd_inv_pasid: true,
} satisfies Record<TraceEvent["type"], true>;

export const TRACE_EVENT_TYPES: readonly string[] = Object.keys(EVENT_TYPES);

/** A problem with a trace option, to be reported naming the option (exit 2). */
/** A bad --trace or --trace-events: a usage error (exit 2), found when the command starts. */
export class TraceOptionError extends ArgumentError {}

/** The event types a pattern selects; a malformed pattern, or a part that matches nothing, names --trace-events. */
export function traceEventFilter(pattern: string): Set<string> {
  const selected = new Set<string>();
  const parts = pattern.split(",").map((p) => p.trim());
  for (const part of parts) {
    if (!/^[a-z0-9_*]+$/.test(part)) {
      throw new TraceOptionError(`option --trace-events: "${part}" is not an event name or glob (letters, digits, _ and *; comma-separated)`);
    }
    const re = new RegExp(`^${part.replace(/\*/g, ".*")}$`);
    const matched = TRACE_EVENT_TYPES.filter((t) => re.test(t));
    if (matched.length === 0) throw new TraceOptionError(`option --trace-events: "${part}" matches no trace event (known: ${TRACE_EVENT_TYPES.join(", ")})`);
    for (const t of matched) selected.add(t);
  }
  return selected;
}

function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `0x${value.toString(16)}` : value;
}

const FLUSH_AT = 1 << 16;

/** Writes the selected events of one or more units to a file, buffered; `close()` flushes. */
export class TraceFile {
  readonly path: string;
  events = 0;
  private fd: number;
  private buffer = "";
  private readonly unsubscribes: (() => void)[] = [];

  /** Opens (truncates) the file now, so an unwritable FILE is refused before anything runs. */
  constructor(path: string, private readonly filter: Set<string> | undefined) {
    this.path = path;
    try {
      this.fd = openSync(path, "w");
    } catch (error) {
      throw new TraceOptionError(`option --trace: cannot write ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Subscribes to a unit's trace; `run` (e.g. "cm=0") is added to each line when given. */
  attach(device: VtdDevice, run?: string): void {
    const unsubscribe = device.trace.subscribe((event) => {
      if (this.filter && !this.filter.has(event.type)) return;
      const line = run === undefined ? { time: device.now, ...event } : { run, time: device.now, ...event };
      this.buffer += `${JSON.stringify(line, jsonValue)}\n`;
      this.events++;
      if (this.buffer.length >= FLUSH_AT) this.flush();
    });
    this.unsubscribes.push(unsubscribe);
  }

  /** Stops listening (e.g. before a dump reads the registers). */
  detach(): void {
    for (const u of this.unsubscribes.splice(0)) u();
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    writeSync(this.fd, this.buffer);
    this.buffer = "";
  }

  close(): void {
    this.detach();
    this.flush();
    closeSync(this.fd);
  }
}

/** Opens the trace file of `--trace FILE` with `--trace-events PATTERN`, or none; throws TraceOptionError. */
export function openTraceFile(path: string | undefined, pattern: string | undefined): TraceFile | undefined {
  const filter = pattern === undefined ? undefined : traceEventFilter(pattern);
  if (path === undefined) {
    if (pattern !== undefined) throw new TraceOptionError("option --trace-events: needs --trace FILE");
    return undefined;
  }
  return new TraceFile(path, filter);
}
