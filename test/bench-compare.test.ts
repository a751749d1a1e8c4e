import { describe, expect, it } from "vitest";
import { compareFigures, formatComparison, parseBenchFile } from "../bench/compare.ts";
import { createReporter, type BenchFigure } from "../bench/harness.ts";

function figure(name: string, value: number, unit: string, baseline: number | null, better: BenchFigure["better"] = unit.includes("/s") ? "higher" : "lower"): BenchFigure {
  return { name, value, unit, baseline, baselineName: null, ratio: baseline === null ? null : value / baseline, better, target: null, met: null };
}

describe("npm run bench -- --compare (bench/compare.ts)", () => {
  it("flags a figure more than 10 % worse, by its ratio when both runs have a baseline", () => {
    const old = [figure("hit", 50, "ns", 10), figure("copy", 100, "ns", 90), figure("rate", 4, "M/s", 5), figure("count", 3, "", null), figure("gone", 1, "ns", null)];
    const now = [
      figure("hit", 112, "ns", 20), // twice as slow, but so is its baseline: ratio 5.6 against 5 is 12 % worse
      figure("copy", 109, "ns", 100), // ratio 1.09 against 1.11: better
      figure("rate", 3, "M/s", 5), // ratio 0.6 against 0.8: 33 % worse for a rate
      figure("count", 3.2, "", null), // by value: 6.7 % more, within 10 %
      figure("new", 1, "ns", null),
    ];
    const c = compareFigures(old, now);
    const byName = Object.fromEntries(c.changes.map((ch) => [ch.name, ch]));
    expect(byName.hit).toMatchObject({ by: "ratio", flagged: true });
    expect(byName.hit!.worse).toBeCloseTo(0.12, 5);
    expect(byName.copy).toMatchObject({ by: "ratio", flagged: false });
    expect(byName.copy!.worse).toBeLessThan(0);
    expect(byName.rate).toMatchObject({ by: "ratio", flagged: true });
    expect(byName.rate!.worse).toBeCloseTo(1 / 3, 5);
    expect(byName.count).toMatchObject({ by: "value", flagged: false });
    expect([c.missing, c.added]).toEqual([["gone"], ["new"]]);
    const text = formatComparison(c);
    expect(text).toMatch(/^WORSE hit: ratio 5\.00 → 5\.60 \(\+12\.0 % worse\)$/m);
    expect(text).toMatch(/2 figures more than 10 % worse$/);
  });

  it("exactly 10 % worse is not flagged; figures that only describe the run are never compared", () => {
    const c = compareFigures([figure("t", 100, "ns", null), figure("hits", 100, "", null, "none")], [figure("t", 110, "ns", null), figure("hits", 1, "", null, "none")]);
    expect(c.changes.map((ch) => [ch.name, ch.flagged])).toEqual([["t", false]]);
    expect(formatComparison(c)).toMatch(/no figure more than 10 % worse$/);
  });

  it("the reporter keeps each figure with its baseline, ratio and direction, keyed by its section", () => {
    const r = createReporter(() => {});
    r.section("== device ==");
    r.figure("4 KiB DMA", 120, "ns", { baseline: 100, baselineName: "copy" });
    r.figure("descriptors", 3, "M/s");
    expect(r.figures).toEqual([
      { name: "device: 4 KiB DMA", value: 120, unit: "ns", baseline: 100, baselineName: "copy", ratio: 1.2, better: "lower", target: null, met: null },
      { name: "device: descriptors", value: 3, unit: "M/s", baseline: null, baselineName: null, ratio: null, better: "higher", target: null, met: null },
    ]);
  });

  it("an old file that is not one --json wrote is refused, naming the file", () => {
    expect(() => parseBenchFile("{", "old.json")).toThrow(/^bench --compare old\.json: not JSON/);
    expect(() => parseBenchFile("[]", "old.json")).toThrow(/old\.json: not a file written by npm run bench -- --json/);
    expect(() => parseBenchFile(JSON.stringify({ format: "v86-vtd-bench", version: 2, figures: [] }), "old.json")).toThrow(/version 2 is not 1/);
    expect(() => parseBenchFile(JSON.stringify({ format: "v86-vtd-bench", version: 1, figures: [{ name: "x" }] }), "old.json")).toThrow(/figure 0 is not/);
    const good = { format: "v86-vtd-bench", version: 1, date: "", machine: { cores: 2, cpu: "c", node: "v20", platform: "linux x64" }, figures: [figure("a", 1, "ns", 2)] };
    expect(parseBenchFile(JSON.stringify(good), "old.json").figures[0]!.ratio).toBe(0.5);
  });
});
