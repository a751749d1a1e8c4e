/**
 * The panels that read the unit's state: the register file with decoded fields (changed ones
 * highlighted), what the context cache, IOTLB and device-TLBs hold, and the invalidation queue as
 * a ring with its head and tail. All of it through the debug views of src/vtd-device, which
 * change nothing the guest can see.
 */
import { Ecap, getField, Reg } from "../../src/spec/index.ts";
import { FaultReason } from "../../src/spec/index.ts";
import { invalidationQueue, registerValues } from "../../src/vtd-device/debug-view.ts";
import type { VtdDevice } from "../../src/vtd-device/index.ts";
import { el, hex, show, table } from "../dom.ts";
import { describeFields } from "../register-fields.ts";
import { sidText } from "../recorder.ts";

const SIZE_NAME = ["", "4 KiB", "2 MiB", "1 GiB"];
/** Registers of the fault-recording and event groups the page always shows, even at zero. */
const ALWAYS = new Set(["VER", "CAP", "ECAP", "GCMD", "GSTS", "RTADDR", "FSTS", "FECTL", "IQH", "IQT", "IQA", "ICS"]);
/** Ring cells drawn at most (a queue of QS > 0 shows its first pages' worth). */
export const RING_CELLS_SHOWN = 256;

export class RegisterPanel {
  private previous = new Map<string, bigint>();
  constructor(private readonly root: HTMLElement) {}

  update(unit: VtdDevice): void {
    const rows: (string | Node)[][] = [];
    const changed: number[] = [];
    for (const r of registerValues(unit)) {
      const before = this.previous.get(r.name);
      this.previous.set(r.name, r.value);
      if (r.value === 0n && !ALWAYS.has(r.name) && before === undefined) continue;
      if (before !== undefined && before !== r.value) changed.push(rows.length);
      const fields = describeFields(r.name, r.value);
      rows.push([
        el("span", { text: r.name, title: `offset ${hex(r.offset, 3)}` }),
        hex(r.offset, 3),
        hex(r.value, r.width / 4),
        el("span", { class: "fields", text: fields.join(" ") }),
      ]);
    }
    const view = table(["register", "offset", "value", "fields"], rows, { class: "registers" });
    const body = view.querySelector("tbody");
    for (const i of changed) body?.children[i]?.classList.add("changed");
    show(this.root, view);
  }
}

export class CachePanel {
  constructor(private readonly root: HTMLElement) {}

  update(unit: VtdDevice, edSid: number): void {
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
      ? `edu (${sidText(edSid)}): ${unit.deviceTlbs.entries(edSid)} entries of ${unit.deviceTlbs.capacity}`
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

export class QueuePanel {
  constructor(private readonly root: HTMLElement) {}

  update(unit: VtdDevice): void {
    const iqa = unit.readRegister(Reg.IQA, 8);
    if (iqa === 0n) {
      show(this.root, el("p", { class: "empty", text: "IQA = 0: the guest has not set up a queue (yet), or uses register-based invalidation" }));
      return;
    }
    const q = invalidationQueue(unit, RING_CELLS_SHOWN);
    const byIndex = new Map(q.last.map((d) => [d.index, d]));
    const cells: Node[] = [];
    for (let i = 0; i < Math.min(q.size, RING_CELLS_SHOWN); i++) {
      const d = byIndex.get(i);
      const kind = d?.kind ?? "(empty)";
      const cls = ["cell", KIND_CLASS.find(([re]) => re.test(kind))?.[1] ?? "d-empty"];
      if (i === q.head) cls.push("head");
      if (i === q.tail) cls.push("tail");
      cells.push(el("span", { class: cls.join(" "), title: `[${i}] ${kind}` }));
    }
    const recent = q.last.filter((d) => d.kind !== "(empty)").slice(-12);
    show(
      this.root,
      el("p", { text: `base ${hex(q.base)}, ${q.size} descriptors; head ${q.head}, tail ${q.tail} (${q.head === q.tail ? "empty: the unit has fetched everything" : "descriptors pending"})` }),
      el("div", { class: "ring", attrs: { role: "img", "aria-label": `queue ring: head ${q.head}, tail ${q.tail}` } }, ...cells),
      el("p", { class: "legend" }, ...["d-context context-cache", "d-iotlb iotlb", "d-devtlb device-iotlb", "d-iec iec", "d-wait wait"].map((s) => {
        const [cls, label] = s.split(" ") as [string, string];
        return el("span", {}, el("span", { class: `cell ${cls}` }), ` ${label} `);
      }), el("span", {}, el("span", { class: "cell head" }), " head "), el("span", {}, el("span", { class: "cell tail" }), " tail")),
      table(["index", "qw0", "qw1", "descriptor"], recent.map((d) => [String(d.index), hex(d.lo, 16), hex(d.hi, 16), d.kind]), { class: "descriptors", empty: "(no descriptor yet)" }),
    );
  }
}
