/**
 * The panels that tell what happened: faults and the interrupts the unit sent, notifier MAP/UNMAP
 * events, queue errors, the strict checker's reports in sentences (the same words `npm start`
 * prints, from src/cli/explain.ts), and the guest's serial console.
 */
import { explainMissingCmInvalidations, explainReport, explainUnflushedTableWrites } from "../../src/cli/explain.ts";
import type { VfioAssignment } from "../../src/vfio/index.ts";
import { el, hex, show, table } from "../dom.ts";
import type { LoggedEvent, RecentList, RunRecorder } from "../recorder.ts";

function logList(title: string, list: RecentList<LoggedEvent>, empty: string): Node[] {
  const items = list.list.map((e) => el("li", {}, el("span", { class: "time", text: `${e.timeMs.toFixed(1)} ms` }), " ", e.text));
  const more = list.total > list.list.length ? ` (last ${list.list.length} of ${list.total})` : "";
  return [el("h3", { text: `${title}: ${list.total}${more}` }), items.length ? el("ol", { class: "log" }, ...items) : el("p", { class: "empty", text: empty })];
}

/** The most host mappings the shadow view lists. */
const SHADOW_ROWS = 32;

function shadowView(vfio: VfioAssignment | string | undefined): Node[] {
  if (vfio === undefined) return [];
  if (typeof vfio === "string") return [el("h3", { text: "VFIO-like shadow of edu" }), el("p", { class: "empty", text: vfio })];
  const mappings = vfio.hostIommu.mappings();
  const rows = mappings.slice(0, SHADOW_ROWS).map((m) => [hex(m.iova), hex(m.size), hex(m.hostAddress), `${m.permission & 1 ? "r" : "-"}${m.permission & 2 ? "w" : "-"}`]);
  return [
    el("h3", { text: `VFIO-like shadow of edu: ${mappings.length} host mappings (${vfio.events.map} MAP, ${vfio.events.unmap} UNMAP received)` }),
    el("p", { class: "caption", text: "shown only: edu's DMA still goes through the unit, so the guest still sees its faults" }),
    table(["IOVA", "size", "host address", "perm"], rows, { class: "shadow", empty: "(nothing mapped)" }),
  ];
}

export class EventPanel {
  private signature = "";
  private recorder: RunRecorder | undefined;
  constructor(private readonly root: HTMLElement) {}

  update(recorder: RunRecorder, vfio: VfioAssignment | string | undefined): void {
    const shadow = typeof vfio === "object" ? `${vfio.events.map} ${vfio.events.unmap}` : String(vfio);
    const signature = `${recorder.faults.total} ${recorder.interrupts.total} ${recorder.remapped.total} ${recorder.notifierEvents.total} ${recorder.queueErrors.total} ${shadow}`;
    if (recorder === this.recorder && signature === this.signature) return;
    this.recorder = recorder;
    this.signature = signature;
    show(
      this.root,
      ...logList("faults", recorder.faults, "(no fault)"),
      ...logList("interrupts the unit sent", recorder.interrupts, "(none)"),
      ...logList("interrupt requests let through (remapping)", recorder.remapped, "(none)"),
      ...logList("notifier events of edu's address space", recorder.notifierEvents, recorder.notifierNote || "(none)"),
      ...(recorder.queueErrors.total ? logList("queue errors", recorder.queueErrors, "") : []),
      ...shadowView(vfio),
    );
  }
}

export class CheckerPanel {
  private signature = "";
  private recorder: RunRecorder | undefined;
  constructor(private readonly root: HTMLElement) {}

  update(recorder: RunRecorder): void {
    const reports = recorder.explain.reports;
    const { inspected } = recorder.explain.counts;
    // The CM sentence also names the invalidation that later covered a report: redraw on invalidations too.
    const signature = `${reports.length} ${inspected} ${recorder.explain.invalidations.length}`;
    if (recorder === this.recorder && signature === this.signature) return;
    this.recorder = recorder;
    this.signature = signature;
    const summary = el("p", { text: `${reports.length === 0 ? "no driver bug" : `${reports.length} driver bug${reports.length === 1 ? "" : "s"}`} in ${inspected} requests inspected` });
    const sentences = [explainMissingCmInvalidations(recorder.explain), explainUnflushedTableWrites(recorder.explain)]
      .flatMap((text) => (text ? [el("p", { class: "sentence", text: text.split("\n").slice(1).join(" ") })] : []));
    const paragraphs = reports.slice(0, 20).map(({ report }, i) => el("pre", { class: "report", text: explainReport(report, i + 1) }));
    show(this.root, summary, ...sentences, ...paragraphs);
  }
}

/**
 * The serial console: text appended as it comes and drawn at the page's refresh rate, the last
 * 256 KiB kept. `measure` (layout reads) runs before any panel writes, `flush` after.
 */
export class ConsolePanel {
  static readonly KEEP = 256 * 1024;
  private pending = "";
  private kept = 0;
  private follow = true;
  constructor(private readonly root: HTMLElement) {}

  write(text: string): void {
    this.pending += text;
  }

  clear(): void {
    this.pending = "";
    this.kept = 0;
    this.follow = true;
    this.root.textContent = "";
  }

  /** Whether the reader is at the end (then new text keeps it there). Reads layout: call before writing to the page. */
  measure(): void {
    if (this.pending) this.follow = this.root.scrollTop + this.root.clientHeight >= this.root.scrollHeight - 4;
  }

  flush(): void {
    if (!this.pending) return;
    this.kept += this.pending.length;
    this.root.append(this.pending);
    this.pending = "";
    if (this.kept > ConsolePanel.KEEP) {
      const text = (this.root.textContent ?? "").slice(-ConsolePanel.KEEP);
      this.root.textContent = text;
      this.kept = text.length;
    }
    // In the next frame, whose layout the browser does anyway: no extra layout here.
    if (this.follow) requestAnimationFrame(() => (this.root.scrollTop = this.root.scrollHeight));
  }
}
