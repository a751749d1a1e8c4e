/**
 * `--dump`: the unit's state at exit as text views in the manner of Linux's intel-iommu debugfs
 * files (iommu_regset, dmar_translation_struct with each context entry's mappings,
 * invalidation_queue), then the context cache and IOTLB contents. Our own rendering of the
 * debug view (src/vtd-device/debug-view.ts): registers from the unit, tables from guest memory.
 */
import { FaultReason } from "../spec/index.ts";
import { VTD_UNIT_BASE } from "../spec/platform.ts";
import { cacheContents, invalidationQueue, registerValues, translationStructures } from "../vtd-device/debug-view.ts";
import type { VtdDevice } from "../vtd-device/index.ts";

const h16 = (v: bigint) => v.toString(16).padStart(16, "0");
const bdf = (bus: number, devfn: number) => `${bus.toString(16).padStart(2, "0")}:${(devfn >> 3).toString(16).padStart(2, "0")}.${devfn & 7}`;
const sidText = (sid: number) => bdf(sid >> 8, sid & 0xff);
const SIZE_NAME = ["", "4K", "2M", "1G"];

export function formatRegset(device: VtdDevice): string {
  const lines = ["== iommu_regset ==", `IOMMU: dmar0 Register Base Address: ${VTD_UNIT_BASE.toString(16)}`, "Name                Offset  Contents"];
  for (const r of registerValues(device)) lines.push(`${r.name.padEnd(20)}0x${r.offset.toString(16).padStart(3, "0")}   0x${h16(r.value)}`);
  return lines.join("\n");
}

export function formatTranslationStruct(device: VtdDevice, mappingLimit = 64): string {
  const t = translationStructures(device, mappingLimit);
  const lines = ["== dmar_translation_struct ==", `IOMMU dmar0: Root Table Address: 0x${t.rootTable.toString(16)}`];
  if (t.problem) return [...lines, `  ${t.problem}`].join("\n");
  lines.push("B.D.F    Root_entry (hi:lo)                     Context_entry (hi:lo)                  DID  AW  TT  SLPTPTR");
  for (const c of t.contexts) {
    lines.push(`${bdf(c.bus, c.devfn)}  0x${h16(c.rootHi)}:0x${h16(c.rootLo)}  0x${h16(c.hi)}:0x${h16(c.lo)}  ${String(c.did).padEnd(4)} ${String(c.aw).padEnd(3)} ${String(c.translationType).padEnd(3)} 0x${c.tableRoot.toString(16)}${c.fpd ? " FPD" : ""}`);
  }
  if (t.contexts.length === 0) lines.push("  (no present context entry)");
  for (const c of t.contexts) {
    lines.push("", `Device ${bdf(c.bus, c.devfn)} @0x${c.tableRoot.toString(16)} (DID ${c.did}, ${c.aw + 2}-level)${c.translationType === 2 ? ": pass-through, no tables" : ""}`);
    if (c.translationType === 2) continue;
    lines.push("IOVA_PFN        | size  perm  output              walk (top level first)");
    for (const m of c.mappings) {
      lines.push(`0x${(m.iova >> 12n).toString(16).padStart(13, "0")} | ${SIZE_NAME[m.level]!.padEnd(5)} ${m.read ? "r" : "-"}${m.write ? "w" : "-"}    0x${m.output.toString(16).padEnd(16)}  ${m.path.map((e) => `0x${h16(e)}`).join(" ")}`);
    }
    if (c.mappings.length === 0) lines.push("  (no mapping)");
    if (c.moreMappings > 0) lines.push(`  ... ${c.moreMappings} more mappings`);
  }
  return lines.join("\n");
}

export function formatInvalidationQueue(device: VtdDevice, count = 16): string {
  const q = invalidationQueue(device, count);
  const lines = ["== invalidation_queue ==", "Invalidation queue on IOMMU: dmar0", ` Base: 0x${q.base.toString(16)}\tHead: ${q.head}\tTail: ${q.tail}\t(${q.size} descriptors)`];
  lines.push(` last ${q.last.length} descriptors before the head:`, " Index  qw0               qw1               what");
  for (const d of q.last) lines.push(` ${String(d.index).padStart(5)}  ${h16(d.lo)}  ${h16(d.hi)}  ${d.kind}`);
  return lines.join("\n");
}

export function formatCaches(device: VtdDevice): string {
  const c = cacheContents(device);
  if (!c) return "== caches ==\n  (this unit does not expose its caches)";
  const lines = [`== context cache (${c.contexts.length} entries) ==`];
  lines.push(...c.contexts.map((e) => e.present
    ? `  ${sidText(e.sid)}  DID ${e.did} SLPTPTR 0x${e.tableRoot.toString(16)} AW ${e.aw} TT ${e.translationType}${e.fpd ? " FPD" : ""}`
    : `  ${sidText(e.sid)}  negative: ${FaultReason[e.reason] ?? "fault"} (0x${e.reason.toString(16)}), DID 0`));
  lines.push(`== IOTLB (${c.iotlb.length} entries) ==`);
  for (const e of c.iotlb) {
    const what = e.reason !== 0
      ? `negative: ${FaultReason[e.reason] ?? "fault"} (0x${e.reason.toString(16)})`
      : e.read || e.write ? `0x${e.output.toString(16)} ${e.read ? "r" : "-"}${e.write ? "w" : "-"}` : "no access (R = W = 0)";
    lines.push(`  DID ${e.did}  IOVA 0x${e.iova.toString(16)} ${SIZE_NAME[e.level]}  -> ${what}`);
  }
  return lines.join("\n");
}

/** All the views, separated by blank lines. */
export function formatDump(device: VtdDevice): string {
  return ["", formatRegset(device), "", formatTranslationStruct(device), "", formatInvalidationQueue(device), "", formatCaches(device)].join("\n");
}
