import { beforeEach, describe, expect, it } from "vitest";
import { DMA_ABORT, DMA_OK, dmaFailure } from "../vtd-device/dma-result.ts";
import { GuestRam } from "../vtd-device/memory/guest-memory.ts";
import { FaultReason } from "../spec/fault-reasons.ts";
import type { BusAddress, PciFunctionPort } from "./bus.ts";
import { EDU_BUFFER_ADDRESS, EDU_FULL_DMA_MASK, EDU_ID, EduDevice, EduDmaCommand, EduInterrupt, EduReg, EduStatus } from "./edu.ts";

/** A unit-test bus: identity DMA over a small RAM (or a fault), recorded interrupts, a manual scheduler. */
class FakeBus {
  ram = new GuestRam(1 << 20);
  dmaLog: { write: boolean; iova: BusAddress; length: number }[] = [];
  fault: FaultReason | undefined;
  msi = false;
  msisSent = 0;
  intx = false;
  scheduled: { delayMs: number; action: () => void }[] = [];
  port: PciFunctionPort = {
    dma: {
      sourceId: 0x20,
      read: (iova, into) => {
        this.dmaLog.push({ write: false, iova, length: into.length });
        if (this.fault) return dmaFailure(this.fault);
        return this.ram.read(BigInt(iova), into) ? DMA_OK : dmaFailure(DMA_ABORT);
      },
      write: (iova, data) => {
        this.dmaLog.push({ write: true, iova, length: data.length });
        if (this.fault) return dmaFailure(this.fault);
        return this.ram.write(BigInt(iova), data) ? DMA_OK : dmaFailure(DMA_ABORT);
      },
    },
    interrupts: {
      msiEnabled: () => this.msi,
      sendMsi: () => this.msisSent++,
      setIntx: (level) => (this.intx = level),
    },
    scheduler: { after: (delayMs, action) => this.scheduled.push({ delayMs, action }) },
  };

  runScheduled(): void {
    const due = this.scheduled.splice(0);
    for (const { action } of due) action();
  }
}

describe("edu register map", () => {
  let bus: FakeBus;
  let edu: EduDevice;
  const read = (offset: number) => edu.readMmio(offset, 4);
  const write = (offset: number, value: number) => edu.writeMmio(offset, 4, value);
  /** A 64-bit access as v86 makes it: two 32-bit ones, low half first. */
  const read64 = (offset: number) => (BigInt(read(offset + 4)) << 32n) | BigInt(read(offset));
  const write64 = (offset: number, value: bigint) => {
    write(offset, Number(value & 0xffff_ffffn));
    write(offset + 4, Number(value >> 32n));
  };

  beforeEach(() => {
    bus = new FakeBus();
    edu = new EduDevice({ port: bus.port });
  });

  it("identifies itself and answers the liveness check with the inverted value", () => {
    expect(read(EduReg.ID)).toBe(EDU_ID);
    expect(read(EduReg.LIVENESS)).toBe(0);
    write(EduReg.LIVENESS, 0x1234_5678);
    expect(read(EduReg.LIVENESS)).toBe(0xedcb_a987);
  });

  it("accepts only 4-byte accesses (an 8-byte one arrives as two); others and unknown offsets read all ones", () => {
    expect(edu.readMmio(EduReg.ID, 1)).toBe(0xff);
    expect(edu.readMmio(EduReg.ID, 2)).toBe(0xffff);
    expect(edu.readMmio(EduReg.DMA_SOURCE, 1)).toBe(0xff);
    edu.writeMmio(EduReg.LIVENESS, 1, 5);
    edu.writeMmio(EduReg.LIVENESS, 2, 5);
    expect(read(EduReg.LIVENESS)).toBe(0);
    expect(read(0x10)).toBe(0xffff_ffff);
    expect(read(EduReg.INTERRUPT_RAISE)).toBe(0xffff_ffff);
    write64(EduReg.DMA_SOURCE, 0x1_2345_6789n);
    expect(read64(EduReg.DMA_SOURCE)).toBe(0x1_2345_6789n);
    edu.writeMmio(EduReg.DMA_SOURCE, 1, 0x55);
    expect(read64(EduReg.DMA_SOURCE)).toBe(0x1_2345_6789n);
  });

  it("computes the factorial at the next safe point and raises interrupt 0x1 if asked", () => {
    write(EduReg.STATUS, EduStatus.IRQ_ON_FACTORIAL);
    write(EduReg.FACTORIAL, 10);
    expect(read(EduReg.STATUS)).toBe(EduStatus.COMPUTING | EduStatus.IRQ_ON_FACTORIAL);
    write(EduReg.FACTORIAL, 3); // ignored while computing
    bus.runScheduled();
    expect(read(EduReg.FACTORIAL)).toBe(3_628_800);
    expect(read(EduReg.STATUS)).toBe(EduStatus.IRQ_ON_FACTORIAL);
    expect(read(EduReg.INTERRUPT_STATUS)).toBe(EduInterrupt.FACTORIAL);
    expect(bus.intx).toBe(true);
    write(EduReg.FACTORIAL, 13); // 13! mod 2^32
    bus.runScheduled();
    expect(read(EduReg.FACTORIAL)).toBe(6_227_020_800 % 2 ** 32);
  });

  it("raises INTx while any interrupt status bit is set, and lowers it on acknowledge", () => {
    write(EduReg.INTERRUPT_RAISE, 0x5);
    expect(bus.intx).toBe(true);
    write(EduReg.INTERRUPT_ACK, 0x1);
    expect(bus.intx).toBe(true);
    write(EduReg.INTERRUPT_ACK, 0x4);
    expect(bus.intx).toBe(false);
    expect(read(EduReg.INTERRUPT_STATUS)).toBe(0);
  });

  it("sends an MSI per raise when MSI is enabled, and never touches INTx", () => {
    bus.msi = true;
    write(EduReg.INTERRUPT_RAISE, 0x1);
    write(EduReg.INTERRUPT_RAISE, 0x2);
    write(EduReg.INTERRUPT_ACK, 0x3);
    expect(bus.msisSent).toBe(2);
    expect(bus.intx).toBe(false);
  });

  it("copies RAM -> buffer -> RAM through its DMA handle, after the scheduled delay", () => {
    edu = new EduDevice({ port: bus.port, dmaDelayMs: 100 });
    bus.ram.direct.set([1, 2, 3, 4, 5, 6, 7, 8], 0x1000);
    write(EduReg.DMA_SOURCE, 0x1000);
    write(EduReg.DMA_DESTINATION, EDU_BUFFER_ADDRESS + 16);
    write(EduReg.DMA_COUNT, 8);
    write(EduReg.DMA_COMMAND, EduDmaCommand.START);
    expect(bus.scheduled.map((s) => s.delayMs)).toEqual([100]);
    expect(read(EduReg.DMA_COMMAND) & 1).toBe(1);
    write(EduReg.DMA_SOURCE, 0x9999); // frozen while running
    bus.runScheduled();
    expect(read(EduReg.DMA_SOURCE)).toBe(0x1000);
    expect(read(EduReg.DMA_COMMAND) & 1).toBe(0);
    expect(Array.from(edu.buffer.subarray(16, 24))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    write(EduReg.DMA_SOURCE, EDU_BUFFER_ADDRESS + 16);
    write(EduReg.DMA_DESTINATION, 0x2000);
    write(EduReg.DMA_COMMAND, EduDmaCommand.START | EduDmaCommand.TO_RAM | EduDmaCommand.IRQ);
    bus.runScheduled();
    expect(Array.from(bus.ram.direct.subarray(0x2000, 0x2008))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(read(EduReg.INTERRUPT_STATUS)).toBe(EduInterrupt.DMA);
    expect(bus.dmaLog).toEqual([
      { write: false, iova: 0x1000, length: 8 },
      { write: true, iova: 0x2000, length: 8 },
    ]);
    expect(edu.stats).toMatchObject({ dmaTransfers: 2, dmaFailures: 0 });
  });

  it("masks bus addresses with the DMA mask (default 28 bits)", () => {
    write(EduReg.DMA_SOURCE, 0xf000_1000);
    write(EduReg.DMA_DESTINATION, EDU_BUFFER_ADDRESS);
    write(EduReg.DMA_COUNT, 4);
    write(EduReg.DMA_COMMAND, EduDmaCommand.START);
    bus.runScheduled();
    expect(bus.dmaLog[0]!.iova).toBe(0x1000);
  });

  it("hands its DMA handle a number below 2^53 and the exact bigint from there on (full DMA mask)", () => {
    edu = new EduDevice({ port: bus.port, dmaMask: EDU_FULL_DMA_MASK });
    bus.fault = FaultReason.AddressBeyondMgaw; // nothing moves; only the addresses matter here
    for (const source of [0x1_0000_2000n, 0x1f_ffff_ffff_f000n, 0x20_0000_0000_0000n, 0xffff_ffff_ffff_f001n]) {
      write64(EduReg.DMA_SOURCE, source);
      write(EduReg.DMA_DESTINATION, EDU_BUFFER_ADDRESS);
      write(EduReg.DMA_COUNT, 4);
      write(EduReg.DMA_COMMAND, EduDmaCommand.START);
      bus.runScheduled();
    }
    expect(bus.dmaLog.map((entry) => entry.iova)).toEqual([0x1_0000_2000, 0x1f_ffff_ffff_f000, 0x20_0000_0000_0000n, 0xffff_ffff_ffff_f001n]);
  });

  it("takes a 64-bit register as two 32-bit halves, low first (v86 splits 8-byte accesses)", () => {
    write(EduReg.DMA_DESTINATION, 0x8765_4321);
    write(EduReg.DMA_DESTINATION + 4, 0x1);
    expect(read64(EduReg.DMA_DESTINATION)).toBe(0x1_8765_4321n);
    expect(read(EduReg.DMA_DESTINATION + 4)).toBe(0x1);
    write(EduReg.DMA_DESTINATION, 0x10); // a 4-byte write to the low half sets the whole register
    expect(read64(EduReg.DMA_DESTINATION)).toBe(0x10n);
  });

  it("refuses a range outside its buffer without transferring, and still completes", () => {
    write(EduReg.DMA_SOURCE, 0x1000);
    write(EduReg.DMA_DESTINATION, EDU_BUFFER_ADDRESS + 4000);
    write(EduReg.DMA_COUNT, 200);
    write(EduReg.DMA_COMMAND, EduDmaCommand.START | EduDmaCommand.IRQ);
    bus.runScheduled();
    expect(bus.dmaLog).toEqual([]);
    expect(edu.stats.rangeErrors).toBe(1);
    expect(read(EduReg.DMA_COMMAND) & 1).toBe(0);
    expect(bus.intx).toBe(true);
  });

  it("counts a DMA the IOMMU refused", () => {
    bus.fault = FaultReason.ContextEntryNotPresent;
    write(EduReg.DMA_SOURCE, 0x1000);
    write(EduReg.DMA_DESTINATION, EDU_BUFFER_ADDRESS);
    write(EduReg.DMA_COUNT, 4);
    write(EduReg.DMA_COMMAND, EduDmaCommand.START);
    bus.runScheduled();
    expect(edu.stats).toMatchObject({ dmaTransfers: 0, dmaFailures: 1, lastDmaResult: { ok: false, reason: FaultReason.ContextEntryNotPresent } });
  });

  it("rejects a negative delay", () => {
    expect(() => new EduDevice({ port: bus.port, dmaDelayMs: -1 })).toThrow(/dmaDelayMs/);
  });
});
