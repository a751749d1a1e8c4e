/**
 * The panels that tell what happened: faults and the interrupts the unit sent, notifier MAP/UNMAP
 * events, queue errors, the strict checker's reports in sentences (the same words `npm start`
 * prints, from src/cli/explain.ts), and the guest's serial console.
 */
import { explainMissingCmInvalidations, explainReport } from "../../src/cli/explain.ts";
import { el, show } from "../dom.ts";
import type { LoggedEvent, RecentList, RunRecorder } from "../recorder.ts";

function logList(title: string, list: RecentList<LoggedEvent>, empty: string): Node[] {
  const items = list.list.map((e) => el("li", {}, el("span", { class: "time", text: `${e.timeMs.toFixed(1)} ms` }), " ", e.text));
  const more = list.total > list.list.length ? ` (last ${list.list.length} of ${list.total})` : "";
  return [el("h3", { text: `${title}: ${list.total}${more}` }), items.length ? el("ol", { class: "log" }, ...items) : el("p", { class: "empty", text: empty })];
}

export class EventPanel {
  constructor(private readonly root: HTMLElement) {}

  update(recorder: RunRecorder): void {
    show(
      this.root,
      ...logList("faults", recorder.faults, "(no fault)"),
      ...logList("interrupts the unit sent", recorder.interrupts, "(none)"),
      ...logList("notifier events of edu's address space", recorder.notifierEvents, recorder.notifierNote || "(none)"),
      ...(recorder.queueErrors.total ? logList("queue errors", recorder.queueErrors, "") : []),
    );
  }
}

export class CheckerPanel {
  private shown = -1;
  constructor(private readonly root: HTMLElement) {}

  update(recorder: RunRecorder): void {
    const reports = recorder.explain.reports;
    const { inspected } = recorder.explain.counts;
    if (reports.length === this.shown && reports.length > 0) return;
    this.shown = reports.length;
    const summary = el("p", { text: `${reports.length === 0 ? "no driver bug" : `${reports.length} driver bug${reports.length === 1 ? "" : "s"}`} in ${inspected} requests inspected` });
    const cm = explainMissingCmInvalidations(recorder.explain);
    const paragraphs = reports.slice(0, 20).map(({ report }, i) => el("pre", { class: "report", text: explainReport(report, i + 1) }));
    show(this.root, summary, ...(cm ? [el("p", { class: "sentence", text: cm.split("\n").slice(1).join(" ") })] : []), ...paragraphs);
  }
}

/** The serial console: text appended as it comes, drawn at the page's refresh rate, the last 256 KiB kept. */
export class ConsolePanel {
  static readonly KEEP = 256 * 1024;
  private pending = "";
  constructor(private readonly root: HTMLElement) {}

  write(text: string): void {
    this.pending += text;
  }

  clear(): void {
    this.pending = "";
    this.root.textContent = "";
  }

  flush(): void {
    if (!this.pending) return;
    const atEnd = this.root.scrollTop + this.root.clientHeight >= this.root.scrollHeight - 4;
    let text = (this.root.textContent ?? "") + this.pending;
    this.pending = "";
    if (text.length > ConsolePanel.KEEP) text = text.slice(text.length - ConsolePanel.KEEP);
    this.root.textContent = text;
    if (atEnd) this.root.scrollTop = this.root.scrollHeight;
  }
}
