/**
 * What the page keeps of a run, fed by the unit while the guest runs: the timeline (invalidations
 * by kind, faults and DMA bytes over the unit's clock), the last faults, interrupts, queue
 * descriptors and notifier events, and the strict checker's reports (through the commands'
 * ExplainRecorder, whose sentences the page shows). Every list is bounded; the hot parts
 * (counting a DMA, a trace event into the timeline) allocate nothing of their own.
 */
import { ExplainRecorder } from "../src/cli/explain.ts";
import { FaultReason } from "../src/spec/index.ts";
import { NotifierFlag, type IommuEvent, type TraceEvent, type VtdDevice } from "../src/vtd-device/index.ts";

export const TIMELINE_SERIES = ["context-cache", "iotlb", "device-iotlb", "faults", "DMA KiB"] as const;
export type TimelineSeries = (typeof TIMELINE_SERIES)[number];
const SERIES_INDEX: Record<TimelineSeries, number> = { "context-cache": 0, iotlb: 1, "device-iotlb": 2, faults: 3, "DMA KiB": 4 };

/** Counts per time bucket; when the run outgrows the buckets, neighbours merge and a bucket covers twice the time. */
export class Timeline {
  static readonly BUCKETS = 512;
  bucketMs = 2;
  /** Buckets in use (the highest one touched, plus one). */
  length = 0;
  private readonly series = TIMELINE_SERIES.map(() => new Float64Array(Timeline.BUCKETS));

  add(series: number, timeMs: number, amount: number): void {
    if (!(timeMs >= 0)) return;
    let index = Math.floor(timeMs / this.bucketMs);
    while (index >= Timeline.BUCKETS) {
      this.merge();
      index = Math.floor(timeMs / this.bucketMs);
    }
    this.series[series]![index]! += amount;
    if (index >= this.length) this.length = index + 1;
  }

  private merge(): void {
    for (const values of this.series) {
      for (let i = 0; i < Timeline.BUCKETS / 2; i++) values[i] = values[2 * i]! + values[2 * i + 1]!;
      values.fill(0, Timeline.BUCKETS / 2);
    }
    this.bucketMs *= 2;
    this.length = Math.ceil(this.length / 2);
  }

  /** The data a chart draws: bucket start times (ms), then one array per series. */
  data(): number[][] {
    const times = Array.from({ length: this.length }, (_, i) => i * this.bucketMs);
    return [times, ...this.series.map((values) => Array.from(values.subarray(0, this.length)))];
  }

  total(series: TimelineSeries): number {
    return this.series[SERIES_INDEX[series]]!.subarray(0, this.length).reduce((a, b) => a + b, 0);
  }
}

/** The last `limit` items, oldest first. */
export class RecentList<T> {
  private readonly items: T[] = [];
  total = 0;
  constructor(readonly limit: number) {}
  push(item: T): void {
    this.total++;
    this.items.push(item);
    if (this.items.length > this.limit) this.items.shift();
  }
  get list(): readonly T[] {
    return this.items;
  }
}

export interface LoggedEvent {
  timeMs: number;
  text: string;
}

const hex = (v: number | bigint) => `0x${v.toString(16)}`;
export const sidText = (sid: number) =>
  `${((sid >> 8) & 0xff).toString(16).padStart(2, "0")}:${((sid >> 3) & 0x1f).toString(16).padStart(2, "0")}.${sid & 7}`;

export class RunRecorder {
  readonly timeline = new Timeline();
  readonly explain = new ExplainRecorder();
  readonly faults = new RecentList<LoggedEvent>(50);
  readonly interrupts = new RecentList<LoggedEvent>(50);
  readonly remapped = new RecentList<LoggedEvent>(50);
  readonly descriptors = new RecentList<LoggedEvent>(50);
  readonly notifierEvents = new RecentList<LoggedEvent>(50);
  readonly queueErrors = new RecentList<LoggedEvent>(20);
  dmaBytes = 0;
  dmaRequests = 0;
  /** Why no notifier listens, when none does. */
  notifierNote = "";
  private device: VtdDevice | undefined;

  /** The unit option `checker`: reports go to the explain recorder. */
  get checkerOption(): ExplainRecorder["checkerOption"] {
    return this.explain.checkerOption;
  }

  attach(device: VtdDevice): void {
    this.device = device;
    this.explain.attach(device);
    device.trace.subscribe((event) => this.onTrace(event));
  }

  /** Listens to MAP/UNMAP of one requester's address space (MAP needs CM = 1, as for VFIO). */
  watchAddressSpace(device: VtdDevice, sid: number): void {
    const cm = device.options.cachingMode;
    const events = cm ? NotifierFlag.MAP | NotifierFlag.UNMAP : NotifierFlag.UNMAP;
    device.notifiers.addressSpace(sid).register((event) => this.onNotifier(event), { events });
    this.notifierNote = cm ? "" : "CM = 0: only UNMAP can be listened to (a MAP notifier needs caching mode, as VFIO does)";
  }

  /** Counts a DMA that the unit moved (`bytes` of it). */
  countDma(bytes: number): void {
    this.dmaRequests++;
    this.dmaBytes += bytes;
    this.timeline.add(4, this.now, bytes / 1024);
  }

  get now(): number {
    return this.device?.now ?? 0;
  }

  private onTrace(event: TraceEvent): void {
    const t = this.now;
    switch (event.type) {
      case "vtd_inv":
        this.timeline.add(event.cache === "context" ? 0 : event.cache === "iotlb" ? 1 : 2, t, 1);
        break;
      case "vtd_inv_pasid":
        this.timeline.add(event.cache === "pasid-cache" ? 0 : 1, t, 1);
        break;
      case "vtd_fault":
        this.timeline.add(3, t, 1);
        this.faults.push({
          timeMs: t,
          text: `${FaultReason[event.reason] ?? "fault"} (${hex(event.reason)}) SID ${sidText(event.sid)} ${event.write ? "write" : "read"} ${hex(event.address)}${event.recorded ? "" : " (not recorded)"}: ${event.why}`,
        });
        break;
      case "vtd_interrupt":
        this.interrupts.push({ timeMs: t, text: `${event.source} event MSI: address ${hex(event.address)} data ${hex(event.data)}` });
        break;
      case "vtd_ir_remap":
        this.remapped.push({
          timeMs: t,
          text: `SID ${sidText(event.sid)} ${hex(event.address)}/${hex(event.data)} ${event.how}${event.index >= 0 ? ` by IRTE ${event.index}` : ""} -> ${hex(event.remappedAddress)}/${hex(event.remappedData)}`,
        });
        break;
      case "vtd_iq_desc":
        this.descriptors.push({ timeMs: t, text: `[${event.head}] ${event.kind}` });
        break;
      case "vtd_iq_error":
        this.queueErrors.push({ timeMs: t, text: `${event.error} at head ${event.head}: ${event.why}` });
        break;
      default:
        break;
    }
  }

  private onNotifier(event: IommuEvent): void {
    const kind = event.type === NotifierFlag.MAP ? "MAP" : event.type === NotifierFlag.UNMAP ? "UNMAP" : "DEVIOTLB_UNMAP";
    const perm = `${event.permission & 1 ? "r" : "-"}${event.permission & 2 ? "w" : "-"}`;
    this.notifierEvents.push({
      timeMs: this.now,
      text: `${kind} SID ${sidText(event.sid)} IOVA ${hex(event.iova)} size ${hex(event.addressMask + 1)} -> ${hex(event.translatedAddress)} ${kind === "MAP" ? perm : ""}`.trimEnd(),
    });
  }
}
