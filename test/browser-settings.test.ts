/**
 * The demo page's parts that need no browser: its URL choices (demo/settings.ts) and the
 * timeline's bounded buckets (demo/recorder.ts).
 */
import { describe, expect, it } from "vitest";
import { Timeline, RecentList } from "../demo/recorder.ts";
import { DEFAULT_SETTINGS, guestCmdline, MAX_DMA_ROUNDS, parseSettings, settingsQuery, type DemoSettings } from "../demo/settings.ts";

describe("demo settings in the URL", () => {
  it("an empty query gives the defaults, and the defaults give an empty query", () => {
    expect(parseSettings("")).toEqual({ settings: DEFAULT_SETTINGS, errors: [] });
    expect(settingsQuery(DEFAULT_SETTINGS)).toBe("");
  });

  it("every setting survives the round trip through the URL", () => {
    const changed: DemoSettings = {
      guest: "linux", cachingMode: false, coherent: true, awBits: 39, queuedInvalidation: false, unmap: "lazy",
      mistake: "none", dmaRounds: 250, descriptorMs: 5, vfio: true, panels: false, refreshHz: 2, startPaused: true, deterministic: true,
    };
    const query = settingsQuery(changed);
    expect(query).toBe("?guest=linux&cm=0&coherent=1&aw=39&qi=0&unmap=lazy&rounds=250&qdt=5&vfio=1&panels=0&hz=2&paused=1&det=1");
    expect(parseSettings(query)).toEqual({ settings: changed, errors: [] });
  });

  it("a bad value is named, with what was expected, and the default kept", () => {
    const { settings, errors } = parseSettings(`?cm=yes&aw=40&rounds=${MAX_DMA_ROUNDS + 1}&hz=0&mistake=forget&unmap=lazy&zoom=2`);
    expect(settings).toEqual(DEFAULT_SETTINGS);
    expect(errors).toEqual([
      "URL parameter zoom: unknown (known: guest, cm, coherent, aw, qi, unmap, mistake, rounds, qdt, vfio, panels, hz, paused, det)",
      'URL parameter aw: expected 39 or 48, got "40"',
      'URL parameter cm: expected 1 or 0, got "yes"',
      'URL parameter mistake: expected one of none, skip-cm-invalidation, skip-cache-flush, skip-iec-invalidation, got "forget"',
      `URL parameter rounds: expected an integer 0..${MAX_DMA_ROUNDS}, got "${MAX_DMA_ROUNDS + 1}"`,
      'URL parameter hz: expected an integer 1..10, got "0"',
      "URL parameter unmap: lazy needs guest=linux (the C test guest unmaps strictly)",
    ]);
  });

  it("every mistake of the C test guest can be chosen from the URL", () => {
    for (const mistake of ["skip-cm-invalidation", "skip-cache-flush", "skip-iec-invalidation"] as const) {
      expect(parseSettings(`?mistake=${mistake}`)).toEqual({ settings: { ...DEFAULT_SETTINGS, mistake }, errors: [] });
    }
  });

  it("a choice the chosen guest does not understand is named and dropped", () => {
    expect(parseSettings("?guest=linux&mistake=skip-cm-invalidation")).toEqual({
      settings: { ...DEFAULT_SETTINGS, guest: "linux" },
      errors: ["URL parameter mistake: skip-cm-invalidation is a mistake of the C test guest, not of Linux (guest=linux)"],
    });
  });

  it("the guest's command line carries the mistake, register-based invalidation and the DMA workload", () => {
    expect(guestCmdline(DEFAULT_SETTINGS)).toBe("");
    expect(guestCmdline({ ...DEFAULT_SETTINGS, mistake: "skip-cm-invalidation", queuedInvalidation: false, dmaRounds: 7 })).toBe("skip-cm-invalidation no-qi dma-rounds=7");
    expect(guestCmdline({ ...DEFAULT_SETTINGS, mistake: "skip-iec-invalidation" })).toBe("skip-iec-invalidation");
    expect(guestCmdline({ ...DEFAULT_SETTINGS, mistake: "skip-cache-flush" })).toBe("skip-cache-flush");
    expect(guestCmdline({ ...DEFAULT_SETTINGS, guest: "linux", unmap: "lazy" })).toBe("console=ttyS0 intel_iommu=on iommu.strict=0 workload_mib=4");
  });
});

describe("demo timeline", () => {
  it("keeps its buckets bounded: a long run merges neighbours and doubles the bucket width, keeping every count", () => {
    const t = new Timeline();
    const width = t.bucketMs;
    t.add(1, 0, 1);
    t.add(1, width * 3.5, 2);
    expect(t.length).toBe(4);
    t.add(3, width * Timeline.BUCKETS * 5, 1);
    expect(t.bucketMs).toBe(width * 8);
    expect(t.length).toBeLessThanOrEqual(Timeline.BUCKETS);
    expect(t.total("iotlb")).toBe(3);
    expect(t.total("faults")).toBe(1);
    const [times, ...series] = t.data();
    expect(times).toHaveLength(t.length);
    expect(series[1]![0]).toBe(3);
    expect(series[3]![t.length - 1]).toBe(1);
  });

  it("ignores a time that is no time", () => {
    const t = new Timeline();
    t.add(0, Number.NaN, 1);
    t.add(0, -1, 1);
    expect(t.length).toBe(0);
  });

  it("a recent list keeps the last items and counts them all", () => {
    const list = new RecentList<number>(3);
    for (let i = 0; i < 10; i++) list.push(i);
    expect(list.list).toEqual([7, 8, 9]);
    expect(list.total).toBe(10);
  });
});
