/**
 * The unit's trace as v86 events: `emulator.add_listener("vtd-fault", event => ...)`. Each v86
 * event carries the unit's trace event (trace.ts, named like QEMU's trace points) unchanged.
 * The unit's trace is subscribed to only while someone listens to a `vtd-*` event, so an
 * attached unit nobody watches builds no event at all (the trace costs one branch then).
 */
import type { TraceEvent, VtdDevice } from "../vtd-device/index.ts";

/** The v86 events and the unit's trace events each carries. */
export const VTD_EVENTS = {
  /** A DMA-remapping or interrupt-remapping fault (recorded or not: see `recorded`). */
  "vtd-fault": ["vtd_fault", "vtd_ir_fault"],
  /** A context-cache, IOTLB, device-TLB or interrupt-entry-cache invalidation, or a queue error. */
  "vtd-invalidation": ["vtd_inv", "vtd_inv_iec", "vtd_inv_pasid", "vtd_iq_error"],
  /** An invalidation wait descriptor. */
  "vtd-wait": ["vtd_inv_wait"],
  /** An interrupt the unit sends (fault or completion event) or lets through (interrupt remapping). */
  "vtd-interrupt": ["vtd_interrupt", "vtd_ir_remap"],
  /** A register write and a global command. */
  "vtd-register": ["vtd_reg_write", "vtd_reg_ignored", "vtd_gcmd"],
  /** Every trace event. */
  "vtd-trace": "all",
} as const satisfies Record<string, readonly TraceEvent["type"][] | "all">;

export type VtdEventName = keyof typeof VTD_EVENTS;

/** v86's bus, as far as events go (both ends of its pair have these). */
interface V86Bus {
  listeners: Record<string, { fn: (argument: unknown) => void }[] | undefined>;
  send(name: string, argument: unknown): void;
}

/** The parts of a `V86` object the events use: its two bus ends and the listener methods. */
export interface V86EventSource {
  bus: V86Bus;
  emulator_bus: V86Bus;
  add_listener(event: string, listener: (argument: unknown) => void): void;
  remove_listener(event: string, listener: (argument: unknown) => void): void;
}

const NAMES = Object.keys(VTD_EVENTS) as VtdEventName[];

/** For each trace event type, the v86 events that carry it. */
function routes(): Map<TraceEvent["type"], VtdEventName[]> {
  const map = new Map<TraceEvent["type"], VtdEventName[]>();
  for (const name of NAMES) {
    const types = VTD_EVENTS[name];
    if (types === "all") continue;
    for (const type of types) map.set(type, [...(map.get(type) ?? []), name]);
  }
  return map;
}

export function checkEventSource(emulator: object): string | undefined {
  const e = emulator as Partial<V86EventSource>;
  if (!e.bus || typeof e.bus.listeners !== "object" || !e.emulator_bus || typeof e.emulator_bus.send !== "function") return "emulator.bus / emulator.emulator_bus";
  return undefined;
}

/**
 * Bridges the unit's trace to the emulator's listeners. `add_listener` and `remove_listener` of
 * this emulator are wrapped (own properties) to notice `vtd-*` listeners come and go.
 */
export class VtdEvents {
  private unsubscribe: (() => void) | undefined;
  private readonly byType = routes();

  constructor(
    private readonly emulator: V86EventSource,
    private readonly unit: VtdDevice,
  ) {
    const add = emulator.add_listener.bind(emulator);
    const remove = emulator.remove_listener.bind(emulator);
    emulator.add_listener = (event, listener) => {
      add(event, listener);
      if (event.startsWith("vtd-")) this.refresh();
    };
    emulator.remove_listener = (event, listener) => {
      remove(event, listener);
      if (event.startsWith("vtd-")) this.refresh();
    };
    this.refresh(); // listeners added before attaching
  }

  /** Stops forwarding (detach). */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private listening(name: VtdEventName): boolean {
    return (this.emulator.bus.listeners[name]?.length ?? 0) > 0;
  }

  private refresh(): void {
    const any = NAMES.some((name) => this.listening(name));
    if (any && !this.unsubscribe) this.unsubscribe = this.unit.trace.subscribe((event) => this.forward(event));
    else if (!any) this.close();
  }

  private forward(event: TraceEvent): void {
    const bus = this.emulator.emulator_bus;
    const names = this.byType.get(event.type);
    if (names) for (const name of names) bus.send(name, event);
    bus.send("vtd-trace", event);
  }
}
