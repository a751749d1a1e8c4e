/**
 * The timeline: invalidations by kind, faults and DMA volume per bucket of the unit's clock,
 * drawn by uPlot (npm `uplot`). Counts on the left axis, KiB of DMA on the right.
 *
 * Redrawing the canvas is the costliest thing the page does while the guest runs (the browser
 * rasterises and composites it again), so the chart is redrawn at most once per
 * TIMELINE_REDRAW_MS, when its data changed, and once more when the run ends.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { TIMELINE_SERIES, type Timeline } from "../recorder.ts";

const COLORS = ["#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#2ca02c"];
export const TIMELINE_REDRAW_MS = 1000;

export class TimelinePanel {
  private readonly plot: uPlot;
  private readonly caption: HTMLElement;
  private drawnAt = -Infinity;
  private drawn = "";
  private timeline: Timeline | undefined;

  constructor(root: HTMLElement) {
    this.caption = document.createElement("p");
    this.caption.className = "caption";
    const holder = document.createElement("div");
    root.replaceChildren(holder, this.caption);
    const series: uPlot.Series[] = [
      { label: "guest ms" },
      ...TIMELINE_SERIES.map((name, i) => ({
        label: name === "DMA KiB" ? "DMA KiB" : name === "faults" ? "faults" : `${name} invalidations`,
        stroke: COLORS[i]!,
        width: 1.5,
        scale: name === "DMA KiB" ? "kib" : "count",
        points: { show: false },
      })),
    ];
    this.plot = new uPlot(
      {
        width: Math.max(300, root.clientWidth - 8),
        height: 220,
        series,
        scales: { x: { time: false }, count: { range: (_u, _min, max) => [0, Math.max(1, max)] }, kib: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        axes: [
          { label: "unit clock (ms)" },
          { scale: "count", label: "per bucket" },
          { scale: "kib", side: 1, label: "DMA KiB", grid: { show: false } },
        ],
        legend: { live: false },
      },
      [[], ...TIMELINE_SERIES.map(() => [])],
      holder,
    );
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(300, root.clientWidth - 8), height: 220 })).observe(root);
  }

  /** Redraws if the data changed and the last redraw is TIMELINE_REDRAW_MS old (`final`: at once). */
  update(timeline: Timeline, final: boolean): void {
    const now = performance.now();
    if (timeline === this.timeline && !final && now - this.drawnAt < TIMELINE_REDRAW_MS) return;
    const signature = `${timeline.length} ${timeline.bucketMs} ${timeline.total("context-cache")} ${timeline.total("iotlb")} ${timeline.total("device-iotlb")} ${timeline.total("faults")} ${timeline.total("DMA KiB")}`;
    if (timeline === this.timeline && signature === this.drawn) return;
    this.timeline = timeline;
    this.drawn = signature;
    this.drawnAt = now;
    this.plot.setData(timeline.data() as uPlot.AlignedData);
    this.caption.textContent = `one point per ${timeline.bucketMs} ms of the unit's clock (buckets merge as the run grows)`;
  }
}
