/**
 * `npm run bench:linux-profile`: where the host's CPU goes while Linux writes and reads its disk,
 * per mode. The same kernel boots once per mode (intel_iommu=off first: the baseline); the
 * V8 CPU profiler (node:inspector, in this process) runs from the workload's start mark to its end
 * mark, and each sample is put in a room by the file of the function it landed in: this project's
 * unit (src/vtd-device), its devices (src/devices), its v86 glue (src/v86, src/linux), v86's
 * JavaScript, v86's wasm (guest execution), the garbage collector, the rest. Samples are spaced in
 * wall time, which a loaded machine stretches unevenly between boots, so each room's share of the
 * samples is applied to the process CPU time of the same span (process.cpuUsage). The closing
 * lines state this project's JavaScript plus GC as a share of each mode's extra CPU time over `off`.
 * Run unbundled (tsx), so each sample names its source file.
 *
 *   npm run bench:linux-profile [-- --workload-mib N (default 8)]
 */
import { readFileSync } from "node:fs";
import { Session } from "node:inspector";
import { ensureLinuxGuest } from "../firmware/linux/build.ts";
import { bootLinux, lastConsoleLines } from "../src/linux/boot.ts";
import { hostDiskSha256, linuxFigures } from "../src/linux/summary.ts";
import { LINUX_MODES, processCpuMs as cpuMs } from "./linux-modes.ts";

const MODES = LINUX_MODES.map((m) => ({ ...m, name: m.short }));
const ROOMS = ["unit", "devices", "v86 glue", "v86 JS", "v86 wasm", "GC", "other"] as const;
type Room = (typeof ROOMS)[number];

interface ProfileNode { id: number; callFrame: { functionName: string; url: string } }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

/** The room of one profile node, from its source file. */
export function roomOf(node: ProfileNode): Room | "idle" {
  const { url, functionName } = node.callFrame;
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(idle)") return "idle";
  if (url.startsWith("wasm://") || /^(wasm-function|\$)/.test(functionName)) return "v86 wasm";
  if (url.includes("/src/vtd-device/")) return "unit";
  if (url.includes("/src/devices/")) return "devices";
  if (url.includes("/src/v86/") || url.includes("/src/linux/") || url.includes("/src/acpi/")) return "v86 glue";
  if (url.includes("/node_modules/v86/")) return "v86 JS";
  return "other";
}

/** Milliseconds of samples per room. */
export function rooms(profile: Profile): Record<Room, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out = Object.fromEntries(ROOMS.map((r) => [r, 0])) as Record<Room, number>;
  profile.samples.forEach((id, i) => {
    const room = roomOf(byId.get(id)!);
    if (room !== "idle") out[room] += (profile.timeDeltas[i] ?? 0) / 1000;
  });
  return out;
}

function post<T>(session: Session, method: string, params: object = {}): Promise<T> {
  return new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))));
}

async function main(argv: string[]): Promise<void> {
  const at = argv.indexOf("--workload-mib");
  const workloadMiB = at >= 0 ? Number(argv[at + 1]) : 8;
  if (!Number.isInteger(workloadMiB) || workloadMiB < 1) throw new Error(`bench:linux-profile option --workload-mib: expected a positive integer, got "${argv[at + 1]}"`);
  const files = await ensureLinuxGuest();
  const bzImage = new Uint8Array(readFileSync(files.bzImage));
  const initrd = new Uint8Array(readFileSync(files.initrd));
  const session = new Session();
  session.connect();
  await post(session, "Profiler.enable");
  await post(session, "Profiler.setSamplingInterval", { interval: 500 });
  const results: { name: string; rooms: Record<Room, number>; total: number }[] = [];
  for (const mode of MODES) {
    let started: Promise<unknown> | undefined;
    let cpuStart = 0, cpuEnd = 0;
    let stopped: Promise<{ profile: Profile }> | undefined;
    const run = await bootLinux({
      bzImage, initrd, cmdline: mode.cmdline, vtd: mode.vtd, workloadMiB,
      diskMiB: workloadMiB + 16, memoryMiB: 64 + 2 * workloadMiB + 64, timeoutMs: 600_000,
      onMark: (mark) => {
        if (mark === "write-start") {
          started = post(session, "Profiler.start");
          cpuStart = cpuMs();
        } else if (mark === "read-end") {
          cpuEnd = cpuMs();
          stopped = post(session, "Profiler.stop");
        }
      },
    });
    const f = linuxFigures(run);
    if (run.outcome !== "completed" || !f.workload || !started || !stopped) throw new Error(`bench:linux-profile: the ${mode.name} boot ended with ${run.outcome}:\n${lastConsoleLines(run.console)}`);
    if (hostDiskSha256(run, f.workload.mib) !== f.workload.patternSha256) throw new Error(`bench:linux-profile: ${mode.name}: the host's disk does not hold the pattern`);
    await started;
    const sampled = rooms((await stopped).profile);
    const sampledTotal = ROOMS.reduce((sum, room) => sum + sampled[room], 0);
    // Each room's share of the samples, applied to the span's process CPU time.
    const total = cpuEnd - cpuStart;
    const r = Object.fromEntries(ROOMS.map((room) => [room, (total * sampled[room]) / sampledTotal])) as Record<Room, number>;
    results.push({ name: mode.name, rooms: r, total });
    console.log(`${mode.name.padEnd(10)} ${total.toFixed(0).padStart(6)} ms CPU: ${ROOMS.map((room) => `${room} ${r[room].toFixed(0)}`).join(", ")}`);
  }
  const off = results[0]!;
  const ours = (r: Record<Room, number>) => r.unit + r.devices + r["v86 glue"] + r.GC;
  console.log(`\nthe workload (${2 * workloadMiB} MiB moved), process CPU time against off:`);
  for (const r of results.slice(1)) {
    const extra = r.total - off.total;
    const oursExtra = ours(r.rooms) - ours(off.rooms);
    console.log(`${r.name.padEnd(10)} ${(r.total / off.total).toFixed(2)} × off; extra ${extra.toFixed(0)} ms, of which this project's JavaScript + GC ${oursExtra.toFixed(0)} ms (${extra > 0 ? ((100 * oursExtra) / extra).toFixed(1) : "n/a"} %), guest execution (v86 wasm + JS) ${(r.rooms["v86 wasm"] + r.rooms["v86 JS"] - off.rooms["v86 wasm"] - off.rooms["v86 JS"]).toFixed(0)} ms`);
  }
  session.disconnect();
}

if (/linux-profile\.ts$/.test(process.argv[1] ?? "")) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : String(error));
      process.exit(1);
    },
  );
}
