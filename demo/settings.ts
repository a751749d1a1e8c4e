/**
 * The page's choices, kept in the URL so a view can be shared: what the unit offers (caching mode,
 * coherency, address width), how the guest drives it (queued or register-based invalidation,
 * strict unmapping, a deliberate mistake, a DMA workload), and how the page shows it. A bad value
 * is reported by name and the default used instead: the page never fails on a URL.
 */

export interface Choice<T extends string> {
  value: T;
  label: string;
  /** Why this choice cannot be made yet; undefined when it can. */
  unavailable?: string;
}

/** The guest's deliberate mistakes (the C test guest's command line words). */
export const MISTAKES: readonly Choice<"none" | "skip-cm-invalidation" | "skip-cache-flush" | "skip-iec-invalidation">[] = [
  { value: "none", label: "none: the guest follows every rule" },
  { value: "skip-cm-invalidation", label: "skip the caching-mode invalidation (context entry made present)" },
  { value: "skip-cache-flush", label: "skip a cache flush (an unmapped page's entry, ECAP.C = 0)" },
  { value: "skip-iec-invalidation", label: "skip the interrupt-entry-cache invalidation (IRTE made present)" },
];
export type Mistake = (typeof MISTAKES)[number]["value"];

/** The guests the page boots. Linux only when the site was built with it (guests/index.json). */
export const GUESTS: readonly Choice<"c" | "linux">[] = [
  { value: "c", label: "the C test guest (multiboot, no BIOS)" },
  { value: "linux", label: "Linux 6.1 (i386) and its intel-iommu driver, through SeaBIOS" },
];
export type GuestKind = (typeof GUESTS)[number]["value"];

/** Linux's unmapping (iommu.strict); the C test guest always unmaps strictly. */
export const UNMAP_MODES: readonly Choice<"strict" | "lazy">[] = [
  { value: "strict", label: "strict: each unmap waits for its invalidation" },
  { value: "lazy", label: "lazy: unmaps batched in a flush queue (Linux guest)" },
];
export type UnmapMode = (typeof UNMAP_MODES)[number]["value"];

export interface DemoSettings {
  guest: GuestKind;
  /** CAP.CM: the unit may cache not-present entries. */
  cachingMode: boolean;
  /** ECAP.C: table reads snoop the CPU's caches. */
  coherent: boolean;
  awBits: 39 | 48;
  /** ECAP.QI used (false: the guest's `no-qi`, register-based invalidation). */
  queuedInvalidation: boolean;
  unmap: UnmapMode;
  mistake: Mistake;
  /** edu DMA round trips the guest adds at its end (`dma-rounds=N`), 2 KiB each way. */
  dmaRounds: number;
  /** Unit time each queued descriptor takes (the unit option queueDescriptorTimeMs): 0 runs the queue at once; more lets IQH be watched moving. */
  descriptorMs: number;
  /** edu assigned to a VFIO-like shadow (src/vfio) fed by the unit's notifiers; needs caching mode. */
  vfio: boolean;
  /** Panels drawn while the guest runs (false: only the console and the status line). */
  panels: boolean;
  /** Panel refreshes per second. */
  refreshHz: number;
  /** Start the guest paused (then Resume or Step). */
  startPaused: boolean;
  /** Guest time follows guest instructions: the same run every time, whatever the host does. */
  deterministic: boolean;
}

export const DEFAULT_SETTINGS: DemoSettings = {
  guest: "c",
  cachingMode: true,
  coherent: false,
  awBits: 48,
  queuedInvalidation: true,
  unmap: "strict",
  mistake: "none",
  dmaRounds: 0,
  descriptorMs: 0,
  vfio: false,
  panels: true,
  refreshHz: 4,
  startPaused: false,
  deterministic: false,
};

export const MAX_DMA_ROUNDS = 100_000;
export const MAX_REFRESH_HZ = 10;
export const MAX_DESCRIPTOR_MS = 1000;

/** URL parameter names, one per setting. */
const PARAM = {
  guest: "guest",
  cachingMode: "cm",
  coherent: "coherent",
  awBits: "aw",
  queuedInvalidation: "qi",
  unmap: "unmap",
  mistake: "mistake",
  dmaRounds: "rounds",
  descriptorMs: "qdt",
  vfio: "vfio",
  panels: "panels",
  refreshHz: "hz",
  startPaused: "paused",
  deterministic: "det",
} as const satisfies Record<keyof DemoSettings, string>;

function flag(params: URLSearchParams, name: string, fallback: boolean, errors: string[]): boolean {
  const raw = params.get(name);
  if (raw === null) return fallback;
  if (raw === "1" || raw === "on" || raw === "true") return true;
  if (raw === "0" || raw === "off" || raw === "false") return false;
  errors.push(`URL parameter ${name}: expected 1 or 0, got "${raw}"`);
  return fallback;
}

function integer(params: URLSearchParams, name: string, fallback: number, min: number, max: number, errors: string[]): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(value) || value < min || value > max) {
    errors.push(`URL parameter ${name}: expected an integer ${min}..${max}, got "${raw}"`);
    return fallback;
  }
  return value;
}

function choice<T extends string>(params: URLSearchParams, name: string, choices: readonly Choice<T>[], fallback: T, errors: string[]): T {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const found = choices.find((c) => c.value === raw);
  if (!found) {
    errors.push(`URL parameter ${name}: expected one of ${choices.map((c) => c.value).join(", ")}, got "${raw}"`);
    return fallback;
  }
  if (found.unavailable) {
    errors.push(`URL parameter ${name}: ${raw} is not available: ${found.unavailable}`);
    return fallback;
  }
  return found.value;
}

/** The settings a query string asks for, and a sentence for each bad parameter. */
export function parseSettings(search: string): { settings: DemoSettings; errors: string[] } {
  const params = new URLSearchParams(search);
  const errors: string[] = [];
  const d = DEFAULT_SETTINGS;
  const known = new Set<string>(Object.values(PARAM));
  for (const name of params.keys()) if (!known.has(name)) errors.push(`URL parameter ${name}: unknown (known: ${[...known].join(", ")})`);
  const aw = integer(params, PARAM.awBits, d.awBits, 39, 48, errors);
  if (aw !== 39 && aw !== 48) errors.push(`URL parameter ${PARAM.awBits}: expected 39 or 48, got "${aw}"`);
  const settings: DemoSettings = {
    guest: choice(params, PARAM.guest, GUESTS, d.guest, errors),
    cachingMode: flag(params, PARAM.cachingMode, d.cachingMode, errors),
    coherent: flag(params, PARAM.coherent, d.coherent, errors),
    awBits: aw === 39 ? 39 : 48,
    queuedInvalidation: flag(params, PARAM.queuedInvalidation, d.queuedInvalidation, errors),
    unmap: choice(params, PARAM.unmap, UNMAP_MODES, d.unmap, errors),
    mistake: choice(params, PARAM.mistake, MISTAKES, d.mistake, errors),
    dmaRounds: integer(params, PARAM.dmaRounds, d.dmaRounds, 0, MAX_DMA_ROUNDS, errors),
    descriptorMs: integer(params, PARAM.descriptorMs, d.descriptorMs, 0, MAX_DESCRIPTOR_MS, errors),
    vfio: flag(params, PARAM.vfio, d.vfio, errors),
    panels: flag(params, PARAM.panels, d.panels, errors),
    refreshHz: integer(params, PARAM.refreshHz, d.refreshHz, 1, MAX_REFRESH_HZ, errors),
    startPaused: flag(params, PARAM.startPaused, d.startPaused, errors),
    deterministic: flag(params, PARAM.deterministic, d.deterministic, errors),
  };
  if (settings.guest === "c" && settings.unmap === "lazy") {
    errors.push("URL parameter unmap: lazy needs guest=linux (the C test guest unmaps strictly)");
    settings.unmap = "strict";
  }
  if (settings.guest === "linux" && settings.mistake !== "none") {
    errors.push(`URL parameter mistake: ${settings.mistake} is a mistake of the C test guest, not of Linux (guest=linux)`);
    settings.mistake = "none";
  }
  return { settings, errors };
}

/** The query string for `settings`, naming only what differs from the defaults. */
export function settingsQuery(settings: DemoSettings): string {
  const params = new URLSearchParams();
  for (const key of Object.keys(PARAM) as (keyof DemoSettings)[]) {
    const value = settings[key];
    if (value === DEFAULT_SETTINGS[key]) continue;
    params.set(PARAM[key], typeof value === "boolean" ? (value ? "1" : "0") : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * Linux's command line: the console where the page reads it, the driver on, the unmapping mode,
 * and the guest's disk workload in MiB (firmware/linux/init.sh; the same words as src/linux/boot.ts).
 */
export const LINUX_WORKLOAD_MIB = 4;

/** The guest's command line for these settings (the C test guest's words: firmware/main.c). */
export function guestCmdline(settings: DemoSettings): string {
  if (settings.guest === "linux") {
    return `console=ttyS0 intel_iommu=on iommu.strict=${settings.unmap === "strict" ? 1 : 0} workload_mib=${LINUX_WORKLOAD_MIB}`;
  }
  const words: string[] = [];
  if (settings.mistake !== "none") words.push(settings.mistake);
  if (!settings.queuedInvalidation) words.push("no-qi");
  if (settings.dmaRounds > 0) words.push(`dma-rounds=${settings.dmaRounds}`);
  return words.join(" ");
}
