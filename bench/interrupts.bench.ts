/** Interrupt remapping figures: a remapped MSI (IEC hit and miss) and interrupt-entry-cache invalidation. */
import type { BenchReporter } from "./harness.ts";
import { command, compatibility, iec, irMachine, irte, remappable } from "../test/support/interrupt-remapping.ts";
import { desc } from "../test/support/queue.ts";
import { Gcmd, Reg } from "../src/spec/index.ts";

const SID = 0x20;

export default function run(r: BenchReporter): void {
  // A 65,536-entry table; 64 entries in use, all held by the interrupt entry cache after one round.
  const m = irMachine({ awBits: 48 }, 15);
  command(m, Gcmd.CFI);
  const USED = 64;
  for (let i = 0; i < USED; i++) m.writeIrte(i, irte({ vector: 0x30 + i, apicId: i & 7, svt: 1, sid: SID }));
  const handles = Array.from({ length: USED }, (_, i) => remappable(i).address);
  const compat = compatibility(1, 0x30);
  let sink = 0;

  const passThrough = r.measure((n) => {
    for (let i = 0; i < n; i++) sink += m.device.remapInterrupt(SID, compat.address, compat.data) ? m.device.interrupt.data : 0;
  }, 2_000_000);
  const hit = r.measure((n) => {
    for (let i = 0; i < n; i++) sink += m.device.remapInterrupt(SID, handles[i & (USED - 1)]!, 0) ? m.device.interrupt.data : 0;
  }, 2_000_000);
  r.figure("remapped MSI, IEC hit (remapInterrupt, numbers)", hit.nsPerOp, "ns", { baseline: passThrough.nsPerOp, baselineName: "compatibility-format pass-through, CFIS = 1" });
  const bigHandles = handles.map((a) => BigInt(a));
  const edge = r.measure((n) => {
    for (let i = 0; i < n; i++) {
      const result = m.device.interruptRequest(SID, bigHandles[i & (USED - 1)]!, 0);
      sink += result.ok ? result.data : 0;
    }
  }, 1_000_000);
  r.figure("remapped MSI, IEC hit (interruptRequest, bigint edge)", edge.nsPerOp, "ns", { baseline: hit.nsPerOp, baselineName: "numbers" });

  // Every index in one cache slot: each request reads its IRTE from the table.
  const misses = Array.from({ length: USED }, (_, i) => remappable(i * 256).address);
  for (let i = 0; i < USED; i++) m.writeIrte(i * 256, irte({ vector: 0x40, svt: 1, sid: SID }));
  const miss = r.measure((n) => {
    for (let i = 0; i < n; i++) sink += m.device.remapInterrupt(SID, misses[i & (USED - 1)]!, 0) ? 1 : 0;
  }, 1_000_000);
  r.figure("remapped MSI, IEC miss (IRTE read from the table)", miss.nsPerOp, "ns", { baseline: hit.nsPerOp, baselineName: "IEC hit" });

  // Invalidation: one descriptor per tail write, the queue full of the same descriptor.
  const oneDescriptorPerTail = (descriptor: [bigint, bigint]) => {
    const u = irMachine({ awBits: 48 }, 15);
    const q = u.queue;
    for (let i = 0; i < q.entries; i++) { u.ram.write64(q.base + i * 16, descriptor[0]); u.ram.write64(q.base + i * 16 + 8, descriptor[1]); }
    for (let i = 0; i < USED; i++) { u.writeIrte(i, irte()); u.device.remapInterrupt(SID, remappable(i).address, 0); }
    let tail = q.head;
    return (n: number) => {
      for (let i = 0; i < n; i++) {
        tail = (tail + 1) % q.entries;
        u.device.writeRegister(Reg.IQT, 8, BigInt(tail) << 4n);
      }
    };
  };
  const iotlbGlobal = r.measure(oneDescriptorPerTail(desc.iotlbGlobal()), 300_000);
  const iecGlobal = r.measure(oneDescriptorPerTail(iec.global()), 300_000);
  const iecIndex = r.measure(oneDescriptorPerTail(iec.index(8, 3)), 300_000);
  r.figure("IEC invalidation, global descriptor (tail write included)", iecGlobal.nsPerOp, "ns", { baseline: iotlbGlobal.nsPerOp, baselineName: "one global IOTLB descriptor" });
  r.figure("IEC invalidation, index-selective IM = 3", iecIndex.nsPerOp, "ns", { baseline: iotlbGlobal.nsPerOp, baselineName: "one global IOTLB descriptor" });

  // Refill after a global invalidation: the cost a guest pays per interrupt after it flushed everything.
  const refill = r.measure((n) => {
    for (let i = 0; i < n; i++) {
      if ((i & (USED - 1)) === 0) m.queue.submit(iec.global());
      sink += m.device.remapInterrupt(SID, handles[i & (USED - 1)]!, 0) ? 1 : 0;
    }
  }, 500_000);
  r.figure(`remapped MSI, a global IEC invalidation every ${USED} interrupts`, refill.nsPerOp, "ns", { baseline: hit.nsPerOp, baselineName: "IEC hit" });
  if (sink === 42) console.log("");
}
