/**
 * A type-0 PCI configuration space (PCI Local Bus 3.0 §6.1, BARs §6.2.5.1, capability list §6.7,
 * MSI §6.8.1) with its write rule. Platform-neutral: the bytes may be v86's live config space.
 * v86 stores config writes without asking the device (and drops 32-bit writes to the command
 * register), so the platform routes writes for our functions through `write`, which keeps
 * read-only fields read-only and gives memory BARs their sizing behaviour: the address bits above
 * the BAR's size are writable, the rest read as zero (32-bit, non-prefetchable memory), so
 * writing all ones reads back the size mask and a firmware can place the BAR anywhere aligned.
 */
export const PciReg = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION_ID: 0x08,
  CLASS_CODE: 0x09,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  CAPABILITIES_POINTER: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
} as const;

export const PciCommand = {
  IO_SPACE: 1 << 0,
  MEMORY_SPACE: 1 << 1,
  BUS_MASTER: 1 << 2,
  PARITY_ERROR_RESPONSE: 1 << 6,
  SERR: 1 << 8,
  INTX_DISABLE: 1 << 10,
} as const;
export const PCI_COMMAND_WRITABLE = 0x0547;

export const PciStatus = {
  INTERRUPT: 1 << 3,
  CAPABILITIES_LIST: 1 << 4,
} as const;

export const PCI_CAP_ID_MSI = 0x05;
/** MSI capability (64-bit, no per-vector masking): offsets from the capability. */
export const MsiCap = {
  ID: 0,
  NEXT: 1,
  CONTROL: 2,
  ADDRESS_LO: 4,
  ADDRESS_HI: 8,
  DATA: 12,
  SIZE: 14,
} as const;
export const MsiControl = {
  ENABLE: 1 << 0,
  /** Multiple Message Enable, bits 6:4 (writable; one vector offered, so only 0 is meaningful). */
  MME: 0x70,
  ADDRESS_64: 1 << 7,
} as const;

export interface PciMemoryBar {
  /** BAR number 0..5. */
  index: number;
  /** Guest-physical address at reset (what a BIOS-less guest finds), aligned to `size`. */
  address: number;
  /** Power of two, at least 16 bytes. */
  size: number;
}

/** A capability in the list beyond MSI (e.g. virtio's vendor-specific ones). Read-only to the guest. */
export interface PciCapability {
  /** Offset in config space: dword aligned, at or above 0x40. */
  offset: number;
  /** Capability ID (PCI_CAP_ID_*). */
  id: number;
  /** The bytes after the ID and next-pointer bytes. */
  body: Uint8Array;
}

/** PCI Local Bus 3.0 §6.7: capabilities live in the device-specific part of config space. */
export const PCI_CAPABILITIES_START = 0x40;
/** Memory BAR bits 3:0 (space, type, prefetchable) are read-only; ours are all zero. */
const BAR_ADDRESS_MASK = 0xffff_fff0;

export interface PciFunctionIdentity {
  vendorId: number;
  deviceId: number;
  revisionId: number;
  /** base class << 16 | subclass << 8 | programming interface */
  classCode: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 1 = INTA# .. 4 = INTD#, 0 = none. */
  interruptPin: number;
  bars: PciMemoryBar[];
  /** Offset of a 64-bit, 1-vector MSI capability, or undefined for none. */
  msiCapability?: number;
  /** More capabilities; the list (MSI included) is chained in ascending offset order. */
  capabilities?: PciCapability[];
}

export interface MsiState {
  enabled: boolean;
  address: bigint;
  data: number;
}

/** The initial 256 bytes of a function's config space and the mask of bits the guest may write. */
export function buildConfigSpace(identity: PciFunctionIdentity): { bytes: Uint8Array; writable: Uint8Array } {
  const bytes = new Uint8Array(256);
  const writable = new Uint8Array(256);
  const view = new DataView(bytes.buffer);
  view.setUint16(PciReg.VENDOR_ID, identity.vendorId, true);
  view.setUint16(PciReg.DEVICE_ID, identity.deviceId, true);
  bytes[PciReg.REVISION_ID] = identity.revisionId;
  bytes[PciReg.CLASS_CODE] = identity.classCode & 0xff;
  bytes[PciReg.CLASS_CODE + 1] = (identity.classCode >> 8) & 0xff;
  bytes[PciReg.CLASS_CODE + 2] = (identity.classCode >> 16) & 0xff;
  view.setUint16(PciReg.SUBSYSTEM_VENDOR_ID, identity.subsystemVendorId ?? 0, true);
  view.setUint16(PciReg.SUBSYSTEM_ID, identity.subsystemId ?? 0, true);
  bytes[PciReg.INTERRUPT_PIN] = identity.interruptPin;
  writable[PciReg.COMMAND] = PCI_COMMAND_WRITABLE & 0xff;
  writable[PciReg.COMMAND + 1] = PCI_COMMAND_WRITABLE >> 8;
  writable[PciReg.CACHE_LINE_SIZE] = 0xff;
  writable[PciReg.LATENCY_TIMER] = 0xff;
  writable[PciReg.INTERRUPT_LINE] = 0xff;
  const barIndices = new Set<number>();
  for (const bar of identity.bars) {
    if (!Number.isInteger(bar.index) || bar.index < 0 || bar.index > 5) throw new RangeError(`PCI BAR index ${bar.index} is not 0..5`);
    if (barIndices.has(bar.index)) throw new RangeError(`PCI BAR${bar.index} is given twice`);
    barIndices.add(bar.index);
    if (!Number.isInteger(bar.size) || bar.size < 16 || bar.size > 2 ** 31 || (bar.size & (bar.size - 1)) !== 0) {
      throw new RangeError(`PCI BAR${bar.index}: size 0x${bar.size.toString(16)} must be a power of two of at least 16 bytes`);
    }
    if (!Number.isInteger(bar.address) || bar.address < 0 || bar.address >= 2 ** 32 || bar.address % bar.size !== 0) {
      throw new RangeError(`PCI BAR${bar.index}: address 0x${bar.address.toString(16)} must be a 32-bit address aligned to its size 0x${bar.size.toString(16)}`);
    }
    view.setUint32(PciReg.BAR0 + 4 * bar.index, bar.address >>> 0, true); // 32-bit, non-prefetchable memory
  }
  const list = capabilityList(identity);
  if (list.length > 0) {
    view.setUint16(PciReg.STATUS, PciStatus.CAPABILITIES_LIST, true);
    bytes[PciReg.CAPABILITIES_POINTER] = list[0]!.offset;
  }
  list.forEach((cap, i) => {
    bytes[cap.offset] = cap.id;
    bytes[cap.offset + 1] = list[i + 1]?.offset ?? 0;
    bytes.set(cap.body, cap.offset + 2);
  });
  if (identity.msiCapability !== undefined) {
    const cap = identity.msiCapability;
    view.setUint16(cap + MsiCap.CONTROL, MsiControl.ADDRESS_64, true);
    writable[cap + MsiCap.CONTROL] = MsiControl.ENABLE | MsiControl.MME;
    writable.fill(0xff, cap + MsiCap.ADDRESS_LO, cap + MsiCap.DATA + 2);
    writable[cap + MsiCap.ADDRESS_LO] = 0xfc; // dword aligned
  }
  return { bytes, writable };
}

/** All capabilities (MSI first among equals) sorted by offset, checked for place and overlap. */
function capabilityList(identity: PciFunctionIdentity): PciCapability[] {
  const list: PciCapability[] = [...(identity.capabilities ?? [])];
  if (identity.msiCapability !== undefined) {
    list.push({ offset: identity.msiCapability, id: PCI_CAP_ID_MSI, body: new Uint8Array(MsiCap.SIZE - 2) });
  }
  list.sort((a, b) => a.offset - b.offset);
  let end = PCI_CAPABILITIES_START;
  for (const cap of list) {
    const at = `PCI capability 0x${cap.id.toString(16)} at 0x${cap.offset.toString(16)}`;
    if (!Number.isInteger(cap.offset) || cap.offset < PCI_CAPABILITIES_START || cap.offset % 4 !== 0) {
      throw new RangeError(`${at}: the offset must be dword aligned and at least 0x40`);
    }
    if (cap.offset < end) throw new RangeError(`${at}: overlaps the capability before it (which ends at 0x${end.toString(16)})`);
    end = cap.offset + 2 + cap.body.length;
    if (end > 0x100) throw new RangeError(`${at}: ${cap.body.length + 2} bytes do not fit in the 256-byte config space`);
  }
  return list;
}

/** A function's config space: the live bytes, the write rule and decoded fields. */
export class PciConfigSpace {
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    private readonly writable: Uint8Array,
    private readonly identity: PciFunctionIdentity,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** A guest config write of `size` bytes at `register` (naturally aligned by the caller's port logic). */
  write(register: number, size: 1 | 2 | 4, value: number): void {
    if (register >= PciReg.BAR0 && register < PciReg.BAR0 + 24) {
      this.writeBar(register, size, value);
      return;
    }
    for (let i = 0; i < size; i++) {
      const at = register + i;
      if (at > 0xff) break;
      const mask = this.writable[at]!;
      const byte = (value >>> (8 * i)) & 0xff;
      this.bytes[at] = (this.bytes[at]! & ~mask) | (byte & mask);
    }
  }

  read32(register: number): number {
    return this.view.getUint32(register, true);
  }

  get command(): number {
    return this.view.getUint16(PciReg.COMMAND, true);
  }

  get busMaster(): boolean {
    return (this.command & PciCommand.BUS_MASTER) !== 0;
  }

  get memorySpace(): boolean {
    return (this.command & PciCommand.MEMORY_SPACE) !== 0;
  }

  get intxDisabled(): boolean {
    return (this.command & PciCommand.INTX_DISABLE) !== 0;
  }

  get interruptPin(): number {
    return this.bytes[PciReg.INTERRUPT_PIN]!;
  }

  setInterruptLine(irq: number): void {
    this.bytes[PciReg.INTERRUPT_LINE] = irq;
  }

  /** The status register's Interrupt Status bit: the function's INTx level. */
  get interruptStatus(): boolean {
    return (this.view.getUint16(PciReg.STATUS, true) & PciStatus.INTERRUPT) !== 0;
  }

  /** Reflects the INTx level in the status register's Interrupt Status bit. */
  setInterruptStatus(asserted: boolean): void {
    const status = this.view.getUint16(PciReg.STATUS, true);
    this.view.setUint16(PciReg.STATUS, asserted ? status | PciStatus.INTERRUPT : status & ~PciStatus.INTERRUPT, true);
  }

  /** The MSI capability's enable bit (no allocation: asked at each interrupt). */
  get msiEnabled(): boolean {
    const cap = this.identity.msiCapability;
    return cap !== undefined && (this.view.getUint16(cap + MsiCap.CONTROL, true) & MsiControl.ENABLE) !== 0;
  }

  /** The MSI capability's enable bit, address and data as the guest last wrote them. */
  get msi(): MsiState {
    const cap = this.identity.msiCapability;
    if (cap === undefined) return { enabled: false, address: 0n, data: 0 };
    const control = this.view.getUint16(cap + MsiCap.CONTROL, true);
    const address = (BigInt(this.view.getUint32(cap + MsiCap.ADDRESS_HI, true)) << 32n) | BigInt(this.view.getUint32(cap + MsiCap.ADDRESS_LO, true));
    return { enabled: (control & MsiControl.ENABLE) !== 0, address, data: this.view.getUint16(cap + MsiCap.DATA, true) };
  }

  /**
   * The guest-physical address a memory BAR decodes now (what the guest or its firmware last
   * wrote, masked to the BAR's alignment), or undefined for a BAR the function does not have.
   */
  barAddress(index: number): number | undefined {
    if (!this.identity.bars.some((b) => b.index === index)) return undefined;
    return (this.read32(PciReg.BAR0 + 4 * index) & BAR_ADDRESS_MASK) >>> 0;
  }

  /**
   * PCI 3.0 §6.2.5.1: the bytes written replace those of the BAR's dword; the address bits below
   * the BAR's size and the type bits read as zero, so all ones reads back the size mask.
   * BARs the function does not have read as zero whatever is written.
   */
  private writeBar(register: number, size: 1 | 2 | 4, value: number): void {
    const dword = register & ~3;
    const bar = this.identity.bars.find((b) => b.index === (dword - PciReg.BAR0) >> 2);
    if (!bar) return;
    let merged = this.read32(dword);
    for (let i = 0; i < size && (register & 3) + i < 4; i++) {
      const shift = 8 * ((register & 3) + i);
      merged = (merged & ~(0xff << shift)) | (((value >>> (8 * i)) & 0xff) << shift);
    }
    this.view.setUint32(dword, (merged & ~(bar.size - 1) & BAR_ADDRESS_MASK) >>> 0, true);
  }
}
