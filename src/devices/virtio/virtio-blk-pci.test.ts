/**
 * The virtio-blk function as PCI and virtio see it before any request: its identity and
 * capabilities, feature negotiation, device status, the common configuration registers as a
 * driver (and v86's byte-wise writes) touch them, reset, and the constructor's options.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { buildConfigSpace, PciReg, PciStatus } from "../pci-config.ts";
import { Bar, bit, Common, F, S, TestRing, VirtioBench } from "../../../test/support/virtio-bench.ts";
import { FEATURES, request, rig, SECTORS, SID, T, type Rig } from "../../../test/support/virtio-blk-rig.ts";
import { VirtioBlkDevice, virtioBlkPciIdentity } from "./virtio-blk.ts";

describe("virtio-blk: PCI identity and capabilities", () => {
  const identity = virtioBlkPciIdentity(0xfe80_0000);
  const { bytes } = buildConfigSpace(identity);
  const view = new DataView(bytes.buffer);

  it("is a modern virtio block function: 1af4:1042 rev 1, INTA, a 16 KiB memory BAR0", () => {
    expect(view.getUint32(PciReg.VENDOR_ID, true)).toBe(0x1042_1af4);
    expect(bytes[PciReg.REVISION_ID]).toBe(1);
    expect(view.getUint16(PciReg.SUBSYSTEM_VENDOR_ID, true)).toBe(0x1af4);
    expect(bytes[PciReg.INTERRUPT_PIN]).toBe(1);
    expect(view.getUint32(PciReg.BAR0, true)).toBe(0xfe80_0000);
    expect(identity.bars).toEqual([{ index: 0, address: 0xfe80_0000, size: 0x4000 }]);
  });

  it("chains MSI and the four virtio structures, each in BAR0 where the driver expects it", () => {
    expect(view.getUint16(PciReg.STATUS, true) & PciStatus.CAPABILITIES_LIST).toBeTruthy();
    const found: Record<number, { bar: number; offset: number; length: number; multiplier?: number }> = {};
    const ids: number[] = [];
    for (let at = bytes[PciReg.CAPABILITIES_POINTER]!, n = 0; at !== 0 && n < 48; at = bytes[at + 1]!, n++) {
      ids.push(bytes[at]!);
      if (bytes[at] !== 0x09) continue;
      const type = bytes[at + 3]!;
      found[type] = { bar: bytes[at + 4]!, offset: view.getUint32(at + 8, true), length: view.getUint32(at + 12, true) };
      if (type === 2) found[type]!.multiplier = view.getUint32(at + 16, true);
      expect(bytes[at + 2]).toBe(type === 2 ? 20 : 16); // cap_len
    }
    expect(ids).toEqual([0x05, 0x09, 0x09, 0x09, 0x09]);
    expect(found).toEqual({
      1: { bar: 0, offset: Bar.COMMON, length: 0x38 },
      3: { bar: 0, offset: Bar.ISR, length: 4 },
      4: { bar: 0, offset: Bar.DEVICE, length: 0x3c },
      2: { bar: 0, offset: Bar.NOTIFY, length: 4, multiplier: 4 },
    });
  });
});

describe("virtio-blk: feature negotiation and status", () => {
  let r: Rig;
  beforeEach(() => (r = rig({ start: false })));

  it("offers VERSION_1, ACCESS_PLATFORM, SEG_MAX, BLK_SIZE and FLUSH, nothing else", () => {
    expect(r.driver.deviceFeatures()).toBe(FEATURES);
    r.driver.write(Bar.COMMON + Common.DFSELECT, 4, 2);
    expect(r.driver.read(Bar.COMMON + Common.DF, 4)).toBe(0);
    expect(rig({ start: false, readOnly: true }).driver.deviceFeatures()).toBe(FEATURES | bit(F.RO));
  });

  it("keeps FEATURES_OK for an offered subset with VERSION_1", () => {
    expect(r.driver.negotiate(bit(F.VERSION_1) | bit(F.ACCESS_PLATFORM))).toBe(true);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER | S.FEATURES_OK);
    expect(r.blk.stats.featureNegotiationFailures).toBe(0);
  });

  it("refuses FEATURES_OK without VERSION_1, and for a feature it did not offer", () => {
    expect(r.driver.negotiate(bit(F.ACCESS_PLATFORM) | bit(F.FLUSH))).toBe(false);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER);
    expect(r.blk.stats).toMatchObject({ featureNegotiationFailures: 1, lastError: expect.stringMatching(/VERSION_1/) });
    r.driver.addStatus(S.DRIVER_OK); // no DRIVER_OK without FEATURES_OK
    expect(r.driver.status & S.DRIVER_OK).toBe(0);
    expect(r.driver.negotiate(bit(F.VERSION_1) | bit(F.INDIRECT))).toBe(false);
    expect(r.blk.stats.lastError).toMatch(/not offered: 0x10000000/);
    // The same driver can try again after a reset, and succeed.
    expect(r.driver.negotiate(FEATURES)).toBe(true);
    expect(r.blk.stats.featureNegotiationFailures).toBe(2);
  });

  it("ignores driver feature writes after FEATURES_OK, and status bits the driver tries to clear", () => {
    r.driver.negotiate(bit(F.VERSION_1));
    r.driver.writeDriverFeatures(FEATURES);
    r.driver.write(Bar.COMMON + Common.GFSELECT, 4, 0);
    expect(r.driver.read(Bar.COMMON + Common.GF, 4)).toBe(0);
    expect(r.blk.transport.negotiatedFeatures).toBe(bit(F.VERSION_1));
    r.driver.setStatus(S.ACK);
    expect(r.driver.status).toBe(S.ACK | S.DRIVER | S.FEATURES_OK);
  });

  it("answers the common configuration: one queue of 128, no MSI-X vectors, device config", () => {
    const c = (offset: number, size: 1 | 2 | 4) => r.driver.read(Bar.COMMON + offset, size);
    expect(c(Common.NUMQ, 2)).toBe(1);
    expect(c(Common.Q_SIZE, 2)).toBe(128);
    expect(c(Common.Q_NOFF, 2)).toBe(0);
    expect(c(Common.MSIX, 2)).toBe(0xffff);
    r.driver.write(Bar.COMMON + Common.Q_MSIX, 2, 0);
    expect(c(Common.Q_MSIX, 2)).toBe(0xffff);
    r.driver.write(Bar.COMMON + Common.Q_SELECT, 2, 1); // no queue 1
    expect(c(Common.Q_SIZE, 2)).toBe(0);
    r.driver.write(Bar.COMMON + Common.Q_SIZE, 2, 8);
    expect(c(Common.Q_SIZE, 2)).toBe(0);
    expect(r.driver.read(Bar.COMMON + 0x38, 4)).toBe(0xffff_ffff); // past the structure
    const d = (offset: number) => r.blk.readMmio(Bar.DEVICE + offset, 4);
    expect(r.driver.read64(Bar.DEVICE)).toBe(BigInt(SECTORS)); // capacity
    expect(d(4)).toBe(0);
    expect(d(0x0c)).toBe(126); // seg_max
    expect(d(0x14)).toBe(512); // blk_size
    expect(r.blk.readMmio(Bar.DEVICE + 0x14, 2)).toBe(512);
    expect(r.blk.readMmio(Bar.DEVICE + 0x15, 1)).toBe(2);
    r.blk.writeMmio(Bar.DEVICE, 4, 0); // read-only
    expect(r.driver.read64(Bar.DEVICE)).toBe(BigInt(SECTORS));
  });

  it("takes 16-bit fields a byte at a time and 64-bit addresses as two dwords", () => {
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_SIZE, 0x40);
    expect(r.driver.read(Bar.COMMON + Common.Q_SIZE, 2)).toBe(0x40);
    r.driver.write(Bar.COMMON + Common.Q_DESC, 4, 0x1234_5670);
    r.driver.write(Bar.COMMON + Common.Q_DESC + 4, 4, 0x9);
    expect(r.driver.read64(Bar.COMMON + Common.Q_DESC)).toBe(0x9_1234_5670n);
    expect(r.blk.transport.common.queues[0]!.descTable).toBe(0x9_1234_5670);
    r.driver.write(Bar.COMMON + Common.Q_AVAIL, 8, 0xa_0000_1000n);
    expect(r.blk.transport.common.queues[0]!.driverArea).toBe(0xa_0000_1000);
    // From 2^53 on, the queue keeps the exact address as a bigint.
    r.driver.write(Bar.COMMON + Common.Q_USED, 8, 0xffff_ffff_ffff_f000n);
    expect(r.blk.transport.common.queues[0]!.deviceArea).toBe(0xffff_ffff_ffff_f000n);
    expect(r.driver.read64(Bar.COMMON + Common.Q_USED)).toBe(0xffff_ffff_ffff_f000n);
  });

  it("resets everything when 0 is written to device_status", () => {
    r.driver.start(r.ring, FEATURES);
    r.bench.intx = false;
    request(r, T.FLUSH, 0);
    r.bench.run();
    expect(r.bench.intx).toBe(true);
    r.driver.setStatus(0);
    expect(r.driver.status).toBe(0);
    expect(r.bench.intx).toBe(false);
    expect(r.driver.readIsr()).toBe(0);
    expect(r.driver.read(Bar.COMMON + Common.Q_ENABLE, 2)).toBe(0);
    expect(r.driver.read(Bar.COMMON + Common.Q_SIZE, 2)).toBe(128);
    expect(r.driver.read64(Bar.COMMON + Common.Q_DESC)).toBe(0n);
    expect(r.blk.transport.negotiatedFeatures).toBe(0n);
    expect(r.blk.stats.resets).toBe(2); // negotiate() starts with one
  });

  it("refuses to enable a queue whose size is not a power of two (DEVICE_NEEDS_RESET)", () => {
    r.driver.negotiate(FEATURES);
    r.driver.setupQueue(0, new TestRing(r.bench, 16), { enable: false });
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_SIZE, 12);
    r.driver.write16AsBytes(Bar.COMMON + Common.Q_ENABLE, 1);
    expect(r.driver.read(Bar.COMMON + Common.Q_ENABLE, 2)).toBe(0);
    expect(r.driver.status & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(r.blk.stats.lastError).toMatch(/size 12 is not a power of two/);
  });

  it("stops serving once the driver sets FAILED", () => {
    r.driver.start(r.ring, FEATURES);
    r.bench.run(); // DRIVER_OK: the device looked at its queues
    r.driver.addStatus(S.FAILED);
    request(r, T.FLUSH, 0);
    expect(r.bench.scheduled).toHaveLength(0);
    expect(r.ring.usedIdx).toBe(0);
  });

  it("does nothing for a notification before DRIVER_OK", () => {
    r.driver.negotiate(FEATURES);
    r.driver.setupQueue(0, r.ring);
    request(r, T.FLUSH, 0);
    expect(r.bench.scheduled).toHaveLength(0);
    expect(r.blk.stats.notifications).toBe(1);
    r.driver.addStatus(S.DRIVER_OK); // the device then looks at its queues
    r.bench.run();
    expect(r.ring.usedIdx).toBe(1);
  });
});

describe("virtio-blk: options", () => {
  const port = new VirtioBench(SID).port;
  it("names the option that is wrong", () => {
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(1000) })).toThrow(/option disk: 1000 bytes is not a whole/);
    expect(() => new VirtioBlkDevice({ port, disk: [] as unknown as Uint8Array })).toThrow(/option disk: expected a Uint8Array/);
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(512), queueSize: 100 })).toThrow(/option queueSize: 100/);
    expect(() => new VirtioBlkDevice({ port, disk: new Uint8Array(512), serial: "x".repeat(21) })).toThrow(/option serial/);
  });
});
