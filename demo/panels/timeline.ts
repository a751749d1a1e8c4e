/**
 * The timeline: invalidations by kind, faults and DMA volume per bucket of the unit's clock,
 * drawn by uPlot (npm `uplot`). Counts on the left axis, KiB of DMA on the right.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { TIMELINE_SERIES, type Timeline } from "../recorder.ts";

const COLORS = ["#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#2ca02c"];

export class TimelinePanel {
  private readonly plot: uPlot;
  private readonly caption: HTMLElement;

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
        points: { show: true, size: 4 },
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

  update(timeline: Timeline): void {
    this.plot.setData(timeline.data() as uPlot.AlignedData);
    this.caption.textContent = `one point per ${timeline.bucketMs} ms of the unit's clock (buckets merge as the run grows)`;
  }
}
