/**
 * virtio-blk request cost in-process: a driver-side loop (publish the head, notify, run the
 * scheduled work, read the ISR) with every ring and buffer access translated by the unit,
 * against the same loop with translation off (the IOMMU passes addresses through).
 */
import type { BenchReporter } from "./harness.ts";
import { VirtioBlkDevice } from "../src/devices/virtio/virtio-blk.ts";
import { bit, F, TestDriver, TestRing, VirtioBench } from "../test/support/virtio-bench.ts";

const FEATURES = bit(F.VERSION_1) | bit(F.ACCESS_PLATFORM) | bit(F.SEG_MAX) | bit(F.FLUSH);

/** A loop that reads `bytes` per request (one data descriptor) from a 4 MiB disk. */
function readLoop(translate: boolean, bytes: number): (n: number) => void {
  const bench = new VirtioBench(9 << 3 /* 00:09.0 */, { translate });
  const blk = new VirtioBlkDevice({ port: bench.port, disk: new Uint8Array(4 << 20) });
  const driver = new TestDriver(blk, bench);
  const ring = new TestRing(bench, 16);
  driver.start(ring, FEATURES);
  const header = bench.alloc(16);
  const data = bench.alloc(bytes, 4096);
  const status = bench.alloc(1);
  const head = ring.add([{ phys: header, length: 16 }, { phys: data, length: bytes, write: true }, { phys: status, length: 1, write: true }]);
  driver.notify(0);
  bench.run();
  const sectors = (4 << 20) / 512;
  return (n) => {
    const before = blk.stats.bytesRead;
    for (let i = 0; i < n; i++) {
      bench.ram[header + 8] = (i * (bytes / 512)) % sectors & 0xff; // a different sector each time
      bench.ram[status] = 0xee;
      ring.publish(head);
      driver.notify(0);
      bench.run();
      driver.readIsr();
    }
    if (bench.ram[status] !== 0 || blk.stats.bytesRead - before !== n * bytes) throw new Error(`virtio-blk bench: a request failed (${blk.stats.lastError})`);
  };
}

export default function run(r: BenchReporter): void {
  for (const bytes of [4096, 65536]) {
    const iterations = bytes === 4096 ? 50_000 : 10_000;
    const off = r.measure(readLoop(false, bytes), iterations);
    const on = r.measure(readLoop(true, bytes), iterations);
    const kib = bytes / 1024;
    r.figure(`${kib} KiB IN request, translated`, on.nsPerOp, "ns", { baseline: off.nsPerOp, baselineName: "translation off" });
    r.figure(`${kib} KiB IN throughput, translated`, (bytes / on.nsPerOp) * 1e9 / 2 ** 20, "MiB/s", { baseline: (bytes / off.nsPerOp) * 1e9 / 2 ** 20, baselineName: "translation off" });
  }
}
