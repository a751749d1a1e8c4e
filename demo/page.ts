/**
 * The page: controls bound to the settings (kept in the URL), the session they start, and the
 * refresh loop that redraws the panels a few times per second (not at all while they are
 * hidden: then only the console and the status line are drawn).
 */
import { byId, el } from "./dom.ts";
import { CheckerPanel, ConsolePanel, EventPanel } from "./panels/event-panels.ts";
import { TimelinePanel } from "./panels/timeline.ts";
import { CachePanel, QueuePanel, RegisterPanel } from "./panels/unit-panels.ts";
import { fetchLinux } from "./assets.ts";
import { EDU_SID, Session, type GuestAssets, type RunState } from "./session.ts";
import { GUESTS, MAX_DESCRIPTOR_MS, MISTAKES, settingsQuery, UNMAP_MODES, type Choice, type DemoSettings } from "./settings.ts";
import type { GuestManifest } from "./site-files.ts";

/** What the page measured, also readable by tests and the figures script (window.demo). */
export interface PageFigures {
  /** Bytes the page fetched so far (transfer sizes, or decoded sizes where the server sent no length). */
  loadBytes: number;
  /** Fetching v86.wasm and the guest, patching and compiling v86. */
  assetsMs: number;
  /** Machine creation to the guest's exit, host ms. */
  bootToExitMs: number | undefined;
  /** loading: fetching v86; booting: a (re)start is under way, the previous run's figures no longer count. */
  state: RunState | "loading" | "booting";
  refreshes: number;
  /** Host ms spent drawing the panels, in all. */
  drawMs: number;
  /** Per panel, for finding a slow one. */
  panelMs: Record<string, number>;
}

function fillChoices<T extends string>(select: HTMLSelectElement, choices: readonly Choice<T>[]): void {
  select.replaceChildren(...choices.map((c) => {
    const option = el("option", { text: c.unavailable ? `${c.label} (not yet: ${c.unavailable})` : c.label, attrs: { value: c.value } });
    option.disabled = c.unavailable !== undefined;
    return option;
  }));
}

export class DemoPage {
  session: Session | undefined;
  readonly figures: PageFigures = { loadBytes: 0, assetsMs: 0, bootToExitMs: undefined, state: "loading", refreshes: 0, drawMs: 0, panelMs: {} };
  private assets: GuestAssets | undefined;
  private readonly console = new ConsolePanel(byId("console"));
  private readonly registers = new RegisterPanel(byId("registers"));
  private readonly caches = new CachePanel(byId("caches"));
  private readonly queue = new QueuePanel(byId("queue"));
  private readonly events = new EventPanel(byId("events"));
  private readonly checker = new CheckerPanel(byId("checker"));
  private readonly timeline = new TimelinePanel(byId("timeline"));
  private timer: ReturnType<typeof setInterval> | undefined;
  private drawnFinal = false;
  private starting: Promise<void> | undefined;
  /** Counts restarts: events of a run that was replaced are dropped. */
  private generation = 0;
  /** The restart that started `session`. */
  private sessionGeneration = -1;

  constructor(public settings: DemoSettings, errors: string[]) {
    if (errors.length) this.showErrors(errors);
    fillChoices(byId<HTMLSelectElement>("mistake"), MISTAKES);
    fillChoices(byId<HTMLSelectElement>("unmap"), UNMAP_MODES);
    fillChoices(byId<HTMLSelectElement>("guest"), GUESTS);
    this.showSettings();
    this.bindControls();
    this.startRefresh();
  }

  /** v86 and the C test guest are here: boot. */
  ready(assets: GuestAssets, manifest: GuestManifest, assetsMs: number): void {
    this.assets = assets;
    this.figures.assetsMs = assetsMs;
    const linux = byId<HTMLSelectElement>("guest").querySelector<HTMLOptionElement>('option[value="linux"]');
    if (linux && manifest.linux !== true) {
      linux.disabled = true;
      linux.textContent = `${GUESTS[1]!.label} (not in this build: ${manifest.linux})`;
    }
    if (this.settings.guest === "linux" && manifest.linux !== true) {
      this.showErrors([`URL parameter guest: linux is not in this build of the site: ${manifest.linux}`]);
      this.settings = { ...this.settings, guest: "c" };
      this.showSettings();
    }
    void this.restart();
  }

  fatal(message: string): void {
    this.figures.state = "failed";
    byId("status").textContent = "the demo could not start";
    this.showErrors([message]);
  }

  private showErrors(errors: string[]): void {
    const box = byId("errors");
    box.hidden = false;
    box.textContent = errors.join("\n");
  }

  private showSettings(): void {
    const s = this.settings;
    byId<HTMLSelectElement>("guest").value = s.guest;
    const linux = s.guest === "linux";
    // The C guest's words and Linux's: only the ones the chosen guest understands can be chosen.
    byId<HTMLSelectElement>("mistake").disabled = linux;
    for (const id of ["rounds", "vfio"]) byId<HTMLInputElement>(id).disabled = linux;
    const lazy = byId<HTMLSelectElement>("unmap").querySelector<HTMLOptionElement>('option[value="lazy"]');
    if (lazy) lazy.disabled = !linux;
    byId<HTMLInputElement>("cm").checked = s.cachingMode;
    byId<HTMLInputElement>("coherent").checked = s.coherent;
    byId<HTMLSelectElement>("aw").value = String(s.awBits);
    byId<HTMLInputElement>("qi").checked = s.queuedInvalidation;
    byId<HTMLSelectElement>("unmap").value = s.unmap;
    byId<HTMLSelectElement>("mistake").value = s.mistake;
    byId<HTMLInputElement>("rounds").value = String(s.dmaRounds);
    byId<HTMLInputElement>("qdt").value = String(s.descriptorMs);
    byId<HTMLInputElement>("vfio").checked = s.vfio;
    byId<HTMLInputElement>("det").checked = s.deterministic;
    byId<HTMLInputElement>("panels").checked = s.panels;
    byId<HTMLSelectElement>("hz").value = String(s.refreshHz);
    byId("panels-area").hidden = !s.panels;
  }

  /** Reads the controls into new settings; a bad DMA-rounds value keeps the old one. */
  private readControls(): DemoSettings {
    const rounds = Number(byId<HTMLInputElement>("rounds").value);
    const descriptorMs = Number(byId<HTMLInputElement>("qdt").value);
    const guest = byId<HTMLSelectElement>("guest").value === "linux" ? "linux" : "c";
    return {
      ...this.settings,
      guest,
      cachingMode: byId<HTMLInputElement>("cm").checked,
      coherent: byId<HTMLInputElement>("coherent").checked,
      awBits: byId<HTMLSelectElement>("aw").value === "39" ? 39 : 48,
      queuedInvalidation: byId<HTMLInputElement>("qi").checked,
      mistake: guest === "linux" ? "none" : (byId<HTMLSelectElement>("mistake").value as DemoSettings["mistake"]),
      unmap: guest === "c" ? "strict" : (byId<HTMLSelectElement>("unmap").value as DemoSettings["unmap"]),
      vfio: guest === "c" && byId<HTMLInputElement>("vfio").checked,
      dmaRounds: Number.isInteger(rounds) && rounds >= 0 && rounds <= 100_000 ? rounds : this.settings.dmaRounds,
      descriptorMs: Number.isInteger(descriptorMs) && descriptorMs >= 0 && descriptorMs <= MAX_DESCRIPTOR_MS ? descriptorMs : this.settings.descriptorMs,
      deterministic: byId<HTMLInputElement>("det").checked,
      panels: byId<HTMLInputElement>("panels").checked,
      refreshHz: Number(byId<HTMLSelectElement>("hz").value) || this.settings.refreshHz,
    };
  }

  private bindControls(): void {
    const rebootOn = ["guest", "cm", "coherent", "aw", "qdt", "qi", "unmap", "mistake", "rounds", "det", "vfio"];
    for (const id of rebootOn) byId(id).addEventListener("change", () => this.changed(true));
    for (const id of ["panels", "hz"]) byId(id).addEventListener("change", () => this.changed(false));
    byId("pause").addEventListener("click", () => void this.session?.pause());
    byId("resume").addEventListener("click", () => this.session?.resume());
    byId("step").addEventListener("click", () => this.session?.step());
    byId("reset").addEventListener("click", () => void this.restart());
    document.addEventListener("keydown", (event) => {
      const target = event.target as HTMLElement | null;
      if (event.ctrlKey || event.metaKey || event.altKey || (target && /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName))) return;
      if (event.key === "p") {
        if (this.session?.state === "running") void this.session.pause();
        else this.session?.resume();
      } else if (event.key === "s") this.session?.step();
      else if (event.key === "r") void this.restart();
    });
  }

  private changed(reboot: boolean): void {
    this.settings = this.readControls();
    this.showSettings();
    history.replaceState(null, "", `${location.pathname}${settingsQuery(this.settings)}`);
    byId("panels-area").hidden = !this.settings.panels;
    this.startRefresh();
    if (reboot) void this.restart();
    else this.drawnFinal = false;
  }

  /** Stops the current run, if any, and boots the guest again with the current settings. */
  async restart(): Promise<void> {
    if (!this.assets) return;
    // At once, before anything is awaited: whoever waits for the next run's end must not see this one's.
    const generation = ++this.generation;
    this.figures.state = "booting";
    this.figures.bootToExitMs = undefined;
    byId("results").textContent = "";
    const previous = this.starting;
    const run = (async () => {
      await previous;
      const old = this.session;
      this.session = undefined;
      await old?.stop();
      // A later restart came while this one waited: it boots instead.
      if (generation !== this.generation) return;
      this.console.clear();
      this.drawnFinal = false;
      byId("status").textContent = "booting…";
      const assets = this.assets!;
      try {
        if (this.settings.guest === "linux" && !assets.linux) {
          byId("status").textContent = "fetching the Linux guest and SeaBIOS…";
          assets.linux = await fetchLinux();
        }
        const session = await Session.start(assets, this.settings, {
          onSerial: (text) => {
            if (generation === this.generation) this.console.write(text);
          },
          onState: (state, detail) => {
            if (generation === this.generation) this.stateChanged(state, detail);
          },
        });
        this.session = session;
        this.sessionGeneration = generation;
      } catch (error) {
        if (generation === this.generation) this.fatal(`booting the guest failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    })();
    this.starting = run;
    await run;
  }

  private stateChanged(state: RunState, detail: string): void {
    this.figures.state = state;
    if (state === "finished" || state === "failed") {
      this.figures.bootToExitMs = this.session?.bootToExitMs;
      this.drawnFinal = false;
    }
    const s = this.settings;
    const what = `CM=${s.cachingMode ? 1 : 0}, ECAP.C=${s.coherent ? 1 : 0}, ${s.awBits}-bit${s.mistake !== "none" ? `, mistake: ${s.mistake}` : ""}${s.deterministic ? ", deterministic" : ""}`;
    byId("status").textContent = `guest ${state}${detail ? `: ${detail}` : ""} (${what})`;
    if (state === "failed") this.showErrors([detail]);
  }

  private startRefresh(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.refresh();
      this.console.flush();
    }, 1000 / this.settings.refreshHz);
  }

  /** One redraw; skipped once a finished run has been drawn. */
  private refresh(): void {
    this.console.measure();
    const session = this.session;
    if (!session || this.drawnFinal || this.sessionGeneration !== this.generation) return;
    const final = session.state === "finished" || session.state === "failed";
    if (final) this.drawnFinal = true;
    this.figures.refreshes++;
    this.figures.loadBytes = loadedBytes();
    this.showResults(session.transcript);
    this.showFigures(session);
    if (!this.settings.panels) return;
    const unit = session.device;
    const started = performance.now();
    this.timed("registers", () => this.registers.update(unit));
    this.timed("caches", () => this.caches.update(unit, EDU_SID));
    this.timed("queue", () => this.queue.update(unit));
    this.timed("events", () => this.events.update(session.recorder, session.vfio));
    this.timed("checker", () => this.checker.update(session.recorder));
    this.timed("timeline", () => this.timeline.update(session.recorder.timeline, final));
    this.figures.drawMs += performance.now() - started;
  }

  private timed(panel: string, draw: () => void): void {
    const started = performance.now();
    draw();
    this.figures.panelMs[panel] = (this.figures.panelMs[panel] ?? 0) + performance.now() - started;
  }

  private showResults(transcript: string): void {
    const pass = transcript.match(/^RESULT \S+ PASS$/gm)?.length ?? 0;
    const fail = transcript.match(/^RESULT \S+ FAIL/gm)?.length ?? 0;
    const summary = /^INFO summary passed (\d+) failed (\d+)/m.exec(transcript);
    byId("results").textContent = `${pass} RESULT PASS, ${fail} FAIL${summary ? ` · guest summary: passed ${summary[1]} failed ${summary[2]}` : ""}`;
  }

  private showFigures(session: Session): void {
    const f = this.figures;
    const boot = session.bootToExitMs !== undefined ? `, boot to exit ${session.bootToExitMs.toFixed(0)} ms` : "";
    byId("figures").textContent =
      `page load ${(f.loadBytes / 1024).toFixed(0)} KiB; v86 and guest fetched and compiled in ${f.assetsMs.toFixed(0)} ms${boot}; ` +
      `unit clock ${session.device.now.toFixed(1)} ms, ${session.recorder.dmaRequests} DMA requests (${(session.recorder.dmaBytes / 1024).toFixed(0)} KiB)`;
  }
}

/** What the page has fetched: every resource's transfer size (its decoded size when the transfer size is not reported). */
export function loadedBytes(): number {
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")] as PerformanceResourceTiming[];
  return entries.reduce((sum, e) => sum + (e.transferSize || e.decodedBodySize || 0), 0);
}
