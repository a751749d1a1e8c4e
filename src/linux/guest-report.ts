/**
 * What the Linux guest said about itself: its /init (firmware/linux/init.sh) prints one fact per
 * line as "RESULT <key> <values...>" and the driver's own kernel messages as "DMESG <line>".
 * Parsing is pure (console text in, facts out) so it is tested without booting anything.
 */

export interface IommuGroup {
  id: string;
  /** The group's default domain type as sysfs names it: "DMA", "DMA-FQ" (lazy), "identity" (pass-through). */
  type: string;
  devices: string[];
}

export interface GuestReport {
  /** Every RESULT line in order: key and values. */
  results: { key: string; values: string[] }[];
  /** The guest's dmesg lines about DMAR/IOMMU, as init dumped them. */
  dmesg: string[];
}

const RESULT = /^RESULT (\S+)(?: (.*))?$/;
const DMESG = /^DMESG (.*)$/;

/** Console text to lines: CR LF or LF, a trailing partial line kept. */
export function consoleLines(text: string): string[] {
  return text.replace(/\r/g, "").split("\n");
}

export function parseGuestReport(console: string): GuestReport {
  const report: GuestReport = { results: [], dmesg: [] };
  for (const line of consoleLines(console)) {
    const result = RESULT.exec(line);
    if (result) {
      report.results.push({ key: result[1]!, values: result[2] ? result[2].trim().split(/\s+/) : [] });
      continue;
    }
    const dmesg = DMESG.exec(line);
    if (dmesg) report.dmesg.push(dmesg[1]!);
  }
  return report;
}

/** The values of the first RESULT line with this key, or undefined. */
export function resultValues(report: GuestReport, key: string): string[] | undefined {
  return report.results.find((r) => r.key === key)?.values;
}

export function resultValue(report: GuestReport, key: string): string | undefined {
  return resultValues(report, key)?.[0];
}

export function iommuGroups(report: GuestReport): IommuGroup[] {
  return report.results
    .filter((r) => r.key === "iommu-group")
    .map(({ values: [id = "", type = "", ...devices] }) => ({ id, type, devices }));
}

/** The virtio-blk PCI function (e.g. "0000:00:08.0") and its IOMMU group, as init found them. */
export function virtioBlk(report: GuestReport): { pci: string; group: string } | undefined {
  const values = resultValues(report, "virtio-blk");
  if (!values || values[0] === "none" || values.length < 2) return undefined;
  return { pci: values[0]!, group: values[1]! };
}

export interface Workload {
  mib: number;
  patternSha256: string;
  readbackSha256: string;
  writeStatus: number;
  readStatus: number;
  /** Guest-measured durations from /proc/uptime (10 ms resolution). */
  writeSeconds: number;
  readSeconds: number;
}

export function workload(report: GuestReport): Workload | undefined {
  const writeStart = resultValues(report, "write-start");
  const writeEnd = resultValues(report, "write-end");
  const readStart = resultValues(report, "read-start");
  const readEnd = resultValues(report, "read-end");
  const pattern = resultValue(report, "pattern-sha256");
  const readback = resultValue(report, "readback-sha256");
  if (!writeStart || !writeEnd || !readStart || !readEnd || !pattern || !readback) return undefined;
  return {
    mib: Number(writeStart[0]),
    patternSha256: pattern,
    readbackSha256: readback,
    writeStatus: Number(writeEnd[0]),
    readStatus: Number(readEnd[0]),
    writeSeconds: Number(writeEnd[1]) - Number(writeStart[1]),
    readSeconds: Number(readEnd[1]) - Number(readStart[1]),
  };
}

/** The kernel's words for a DMA remapping fault (dmar.c in 6.1): one per fault it handled. */
export const DMAR_FAULT_PATTERN = /DMAR: \[DMA (Read|Write)|DMAR: DRHD: handling fault|DMAR: \[INTR-REMAP\]/;

/** The pattern init writes: this line repeated and cut to `mib` MiB (what `yes ... | head -c` makes). */
export const PATTERN_LINE = "v86-vtd virtio-blk DMA pattern 0123456789abcdef\n";

export function patternBytes(mib: number): Uint8Array {
  const line = new TextEncoder().encode(PATTERN_LINE);
  const out = new Uint8Array(mib * 2 ** 20);
  for (let at = 0; at < out.length; at += line.length) out.set(line.subarray(0, Math.min(line.length, out.length - at)), at);
  return out;
}
