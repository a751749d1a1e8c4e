/**
 * The panels that read the unit's state: the register file with decoded fields (changed ones
 * highlighted), what the context cache, IOTLB and device-TLBs hold, and the invalidation queue as
 * a ring with its head and tail. All of it through the debug views of src/vtd-device, which
 * change nothing the guest can see.
 *
 * Drawing is kept cheap so the panels do not slow the guest: the register table and the ring are
 * built once and updated in place, and the cache and queue views are read again only when the
 * unit's counters or queue registers say something may have changed.
 */
import { Ecap, getField, Reg } from "../../src/spec/index.ts";
import { FaultReason } from "../../src/spec/index.ts";
import { invalidationQueue, registerValues } from "../../src/vtd-device/debug-view.ts";
import type { VtdDevice } from "../../src/vtd-device/index.ts";
import { el, hex, show, table } from "../dom.ts";
import { describeFields } from "../register-fields.ts";
import { sidText } from "../recorder.ts";

const SIZE_NAME = ["", "4 KiB", "2 MiB", "1 GiB"];
/** Ring cells drawn at most (a queue of QS > 0 shows its first 256 descriptors). */
export const RING_CELLS_SHOWN = 256;

interface RegisterRow {
  value: bigint;
  valueCell: HTMLElement;
  fieldsCell: HTMLElement;
  row: HTMLElement;
}

export class RegisterPanel {
  private rows: RegisterRow[] = [];
  private unit: VtdDevice | undefined;
  constructor(private readonly root: HTMLElement) {}

  update(unit: VtdDevice): void {
    const values = registerValues(unit);
    if (unit !== this.unit || values.length !== this.rows.length) {
      this.unit = unit;
      this.build(values);
      return;
    }
    values.forEach((r, i) => {
      const row = this.rows[i]!;
      const changed = r.value !== row.value;
      if (changed) {
        row.value = r.value;
        row.valueCell.textContent = hex(r.value, r.width / 4);
        row.fieldsCell.textContent = describeFields(r.name, r.value).join(" ");
      }
      if (row.row.classList.contains("changed") !== changed) row.row.classList.toggle("changed", changed);
    });
  }

  private build(values: ReturnType<typeof registerValues>): void {
    this.rows = [];
    const body = el("tbody");
    for (const r of values) {
      const valueCell = el("td", { text: hex(r.value, r.width / 4) });
      const fieldsCell = el("td", { class: "fields", text: describeFields(r.name, r.value).join(" ") });
      const row = el("tr", {}, el("td", { text: r.name }), el("td", { text: hex(r.offset, 3) }), valueCell, fieldsCell);
      body.append(row);
      this.rows.push({ value: r.value, valueCell, fieldsCell, row });
    }
    const head = el("thead", {}, el("tr", {}, ...["register", "offset", "value", "fields"].map((h) => el("th", { text: h, attrs: { scope: "col" } }))));
    show(this.root, el("table", { class: "registers" }, head, body));
  }
}

/** What may change the caches' contents: misses fill them, invalidations empty them. */
function cacheSignature(unit: VtdDevice): string {
  const s = unit.stats;
  const c = s.contextInvalidations;
  const t = s.iotlbInvalidations;
  return `${s.iotlbMisses} ${s.contextMisses} ${c.global} ${c.domain} ${c.device} ${t.global} ${t.domain} ${t.page} ${s.deviceIotlbInvalidations} ${s.descriptorsProcessed}`;
}

export class CachePanel {
  private signature = "";
  private unit: VtdDevice | undefined;
  constructor(private readonly root: HTMLElement) {}

  update(unit: VtdDevice, eduSid: number): void {
    const signature = cacheSignature(unit);
    if (unit === this.unit && signature === this.signature) return;
    this.unit = unit;
    this.signature = signature;
    const c = unit.cacheContents();
    const contexts = c.contexts.map((e) =>
      e.present
        ? [sidText(e.sid), "present", String(e.did), hex(e.tableRoot), String(e.aw), String(e.translationType), e.fpd ? "FPD" : ""]
        : [sidText(e.sid), el("span", { class: "negative", text: `negative: ${FaultReason[e.reason] ?? "fault"} (${hex(e.reason)})` }), "", "", "", "", ""],
    );
    const iotlb = c.iotlb.map((e) => [
      String(e.did),
      hex(e.iova),
      e.reason !== 0 ? el("span", { class: "negative", text: `negative: ${FaultReason[e.reason] ?? "fault"} (${hex(e.reason)}), cached because CAP.CM = 1` }) : hex(e.output),
      SIZE_NAME[e.level] ?? `level ${e.level}`,
      e.reason !== 0 ? "" : `${e.read ? "r" : "-"}${e.write ? "w" : "-"}`,
    ]);
    const dt = getField(unit.readRegister(Reg.ECAP, 8), Ecap.DT) === 1n;
    const deviceTlb = dt
      ? `edu (${sidText(eduSid)}): ${unit.deviceTlbs.entries(eduSid)} entries of ${unit.deviceTlbs.capacity}`
      : "ECAP.DT = 0: no endpoint keeps a device-TLB (the unit option deviceIotlb is off)";
    show(
      this.root,
      el("h3", { text: `context cache (${contexts.length})` }),
      table(["SID", "state", "DID", "SLPTPTR", "AW", "TT", ""], contexts, { empty: "(no cached context)" }),
      el("h3", { text: `IOTLB (${iotlb.length})` }),
      table(["DID", "IOVA", "→ address", "size", "perm"], iotlb, { class: "iotlb", empty: "(no cached translation)" }),
      el("h3", { text: "device-TLBs" }),
      el("p", { text: deviceTlb }),
    );
  }
}

const KIND_CLASS: [RegExp, string][] = [
  [/^context-cache/, "d-context"],
  [/^iotlb/, "d-iotlb"],
  [/^device-iotlb/, "d-devtlb"],
  [/^iec/, "d-iec"],
  [/^wait/, "d-wait"],
];
const LEGEND = [["d-context", "context-cache"], ["d-iotlb", "iotlb"], ["d-devtlb", "device-iotlb"], ["d-iec", "iec"], ["d-wait", "wait"], ["head", "head"], ["tail", "tail"]];

export class QueuePanel {
  private signature = "";
  private unit: VtdDevice | undefined;
  private readonly summary = el("p");
  private readonly ring = el("div", { class: "ring", attrs: { role: "img" } });
  private readonly cells: HTMLElement[] = [];
  private readonly recent = el("div");
  private readonly parts: Node[];

  constructor(private readonly root: HTMLElement) {
    for (let i = 0; i < RING_CELLS_SHOWN; i++) this.cells.push(el("span", { class: "cell d-empty" }));
    this.ring.append(...this.cells);
    const legend = el("p", { class: "legend" }, ...LEGEND.map(([cls, label]) => el("span", {}, el("span", { class: `cell ${cls}` }), ` ${label} `)));
    this.parts = [this.summary, this.ring, legend, this.recent];
  }

  update(unit: VtdDevice): void {
    const iqa = unit.readRegister(Reg.IQA, 8);
    const signature = `${iqa} ${unit.readRegister(Reg.IQH, 8)} ${unit.readRegister(Reg.IQT, 8)}`;
    if (unit === this.unit && signature === this.signature) return;
    const first = unit !== this.unit;
    this.unit = unit;
    this.signature = signature;
    if (iqa === 0n) {
      show(this.root, el("p", { class: "empty", text: "IQA = 0: the guest has not set up a queue (yet), or uses register-based invalidation" }));
      return;
    }
    if (first || this.root.firstChild !== this.summary) this.root.replaceChildren(...this.parts);
    const q = invalidationQueue(unit, RING_CELLS_SHOWN);
    const byIndex = new Map(q.last.map((d) => [d.index, d]));
    this.summary.textContent = `base ${hex(q.base)}, ${q.size} descriptors; head ${q.head}, tail ${q.tail} (${q.head === q.tail ? "empty: the unit has fetched everything" : "descriptors pending"})`;
    this.ring.setAttribute("aria-label", `queue ring: head ${q.head}, tail ${q.tail}`);
    this.cells.forEach((cell, i) => {
      const shown = i < q.size;
      const kind = byIndex.get(i)?.kind ?? "(empty)";
      const cls = `cell ${KIND_CLASS.find(([re]) => re.test(kind))?.[1] ?? "d-empty"}${i === q.head ? " head" : ""}${i === q.tail ? " tail" : ""}`;
      if (cell.className !== cls) cell.className = cls;
      cell.title = `[${i}] ${kind}`;
      cell.hidden = !shown;
    });
    const recent = q.last.filter((d) => d.kind !== "(empty)").slice(-12);
    show(this.recent, table(["index", "qw0", "qw1", "descriptor"], recent.map((d) => [String(d.index), hex(d.lo, 16), hex(d.hi, 16), d.kind]), { class: "descriptors", empty: "(no descriptor yet)" }));
  }
}
