/**
 * The attached unit inside v86's own save_state / restore_state: `await emulator.save_state()`
 * returns one ArrayBuffer that holds v86's machine and ours, and `await emulator.restore_state(buf)`
 * on a fresh emulator made with the same options, attached the same way, brings both back.
 *
 * How: v86 builds its state from the CPU's `get_state()` array (indices 0..91 in 0.5.462); ours is
 * one more entry, a JSON string at MACHINE_STATE_INDEX: the unit's snapshot (unit.saveState, its
 * counters included), the state of each PCI function of ours that can
 * save it (edu, a virtio-blk disk, a caller's own: SavableDevice in src/devices/bus.ts), the
 * configuration address latch, the run counters and virtual clock (Machine.saveState). The
 * Uint8Arrays in a function's state (a disk's sectors) go as binary into one more entry, an array
 * at MACHINE_BINARY_INDEX, which v86 stores as raw bytes; the JSON names them by index. v86's
 * format has no checksum of its own: the entry holds a CRC-32 of the whole buffer (RAM, registers,
 * every device), written into it by the wrapped `save_state` over a placeholder and checked by the
 * wrapped `restore_state` before v86 reads anything.
 *
 * Restoring checks everything first (format, version, CRC, a scratch unit restores the snapshot,
 * each function's checkState), refusing with a VtdStateError that names the reason while the
 * running machine is untouched; then the run counters and virtual clock (before v86, which re-bases its TSC on the clock it reads), then
 * v86's part, then ours (the unit's clock goes on from the saved one; the safe points are re-based;
 * each function's INTx level is taken from its restored Interrupt Status bit). Saving refuses while
 * device work waits for a safe point (an edu DMA with a delay, a virtio queue notified but not yet
 * served, a deferred interrupt): those are host closures, not state. Between two of v86's
 * ticks, with no delays configured, there are none.
 *
 * Also fixed here: v86 0.5.462's own restore_state throws on any machine whose IDE controller has
 * no drive ("reading 'original_bar'"): its PCI set_state moves I/O BARs it has no record of.
 */
import { isSavableDevice, type SavableDevice } from "../devices/bus.ts";
import { crc32Bytes } from "../vtd-device/state/codec.ts";
import { GuestRam, VtdDevice, type VtdOptions, type VtdSnapshot } from "../vtd-device/index.ts";
import type { V86Cpu } from "./internals.ts";
import { checkIoApicLines, type IoApicLines } from "./ioapic-remapping.ts";
import type { Machine, MachineState } from "./machine.ts";
import type { Platform } from "./platform.ts";
import { isCount, isDword } from "../devices/state-checks.ts";

/** Where our entry goes in the CPU's state array (v86 0.5.462 uses 0..91). */
export const MACHINE_STATE_INDEX = 128;
/** Where the binary parts of our functions' states go (an array of Uint8Array). */
export const MACHINE_BINARY_INDEX = 129;
export const MACHINE_STATE_FORMAT = "v86-vtd-machine";
export const MACHINE_STATE_VERSION = 4;

/** A v86 state the attached unit refuses, or a moment at which it cannot save. */
export class VtdStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VtdStateError";
  }
}

interface MachineEntry {
  format: typeof MACHINE_STATE_FORMAT;
  version: typeof MACHINE_STATE_VERSION;
  /** CRC_MARK and the CRC-32 of the whole state buffer with CRC_PLACEHOLDER here, as 8 hex digits. */
  crc: string;
  unit: VtdSnapshot;
  /** Each PCI function of ours that saves its state, with its requester id, in the order attached. */
  functions: FunctionEntry[];
  /** Which I/O APIC lines in remappable format are high (v86's own I/O APIC state does not say). */
  ioApicLines: IoApicLines;
  configAddress: number;
  machine: MachineState;
}

interface FunctionEntry {
  bdf: number;
  name: string;
  state: unknown;
}

/** Marks a Uint8Array of a function's state in the JSON: its index in the binary entry. */
const BINARY_KEY = "$v86vtdBinary";

interface V86State {
  get_state(): unknown[];
  set_state(state: unknown[]): void;
}

/** Marks the CRC in the state's JSON (never escaped: letters, digits, a colon). */
const CRC_MARK = "v86vtdcrc:";
const CRC_PLACEHOLDER = "00000000";
/** v86's state header: magic, version, total length, JSON length (4 int32), then the JSON. */
const HEADER_BYTES = 16;

interface V86Main {
  save_state(): ArrayBuffer;
  restore_state(state: ArrayBuffer): void;
}

/** Where the CRC's 8 hex digits are in a state buffer (in its JSON), or -1. */
function crcOffset(bytes: Uint8Array): number {
  if (bytes.length < HEADER_BYTES) return -1;
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES).getInt32(12, true);
  const end = Math.min(bytes.length, HEADER_BYTES + Math.max(0, jsonLength));
  const mark = Array.from(CRC_MARK, (c) => c.charCodeAt(0));
  // Our entry comes last in v86's JSON state array: search from the end.
  for (let at = end - mark.length - CRC_PLACEHOLDER.length; at >= HEADER_BYTES; at--) {
    if (mark.every((b, i) => bytes[at + i] === b)) return at + mark.length;
  }
  return -1;
}

/** CRC-32 of the buffer with the CRC's digits read as the placeholder. */
function stateCrc(bytes: Uint8Array, digits: number): number {
  const placeholder = new Uint8Array(Array.from(CRC_PLACEHOLDER, (c) => c.charCodeAt(0)));
  let crc = crc32Bytes(bytes.subarray(0, digits));
  crc = crc32Bytes(placeholder, crc);
  return crc32Bytes(bytes.subarray(digits + CRC_PLACEHOLDER.length), crc);
}

/** Wraps v86's save_state and restore_state to write and check the whole state's CRC-32. */
function checksumStates(v86: V86Main): void {
  const save = v86.save_state.bind(v86);
  const restore = v86.restore_state.bind(v86);
  v86.save_state = () => {
    const buffer = save();
    const bytes = new Uint8Array(buffer);
    const digits = crcOffset(bytes);
    if (digits < 0) throw new Error("v86-vtd: the saved state lost its CRC mark");
    const hex = stateCrc(bytes, digits).toString(16).padStart(8, "0");
    for (let i = 0; i < 8; i++) bytes[digits + i] = hex.charCodeAt(i);
    return buffer;
  };
  v86.restore_state = (state) => {
    const bytes = state instanceof Uint8Array ? state : new Uint8Array(state);
    const total = bytes.length >= HEADER_BYTES ? new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES).getUint32(8, true) : -1;
    if (total !== bytes.length && crcOffset(bytes) >= 0) throw new VtdStateError(`this v86 state is truncated or padded: ${bytes.length} bytes, its header says ${total}`);
    const digits = crcOffset(bytes);
    if (digits >= 0) {
      const saved = String.fromCharCode(...bytes.subarray(digits, digits + 8));
      const crc = stateCrc(bytes, digits).toString(16).padStart(8, "0");
      if (saved !== crc) throw new VtdStateError(`this v86 state is damaged: its CRC-32 is ${crc}, the one saved ${saved}`);
    }
    // No mark: not saved with a unit attached (or compressed); set_state below says which.
    restore(state);
  };
}


/** Our PCI functions that save their state, in the order attached. */
function savableFunctions(platform: Platform): { bdf: number; name: string; device: SavableDevice }[] {
  return platform.bus.attachedFunctions().flatMap(({ bdf, name, device }) => (isSavableDevice(device) ? [{ bdf, name, device }] : []));
}

/** Checks each function's part against the function of this machine at its requester id. */
function checkFunctions(saved: unknown, platform: Platform): string | undefined {
  const live = savableFunctions(platform);
  if (!Array.isArray(saved)) return "the PCI functions' states are missing";
  const names = (list: { bdf: number; name: string }[]) => list.map((f) => `${f.name} at ${f.bdf}`).join(", ") || "none";
  const entries = saved as FunctionEntry[];
  if (entries.length !== live.length || entries.some((e, i) => typeof e !== "object" || e === null || e.bdf !== live[i]!.bdf || e.name !== live[i]!.name)) {
    return `the PCI functions saved (${names(entries.filter((e) => typeof e === "object" && e !== null))}) are not this machine's (${names(live)})`;
  }
  for (let i = 0; i < live.length; i++) {
    const why = live[i]!.device.checkState(entries[i]!.state);
    if (why) return `${live[i]!.name}'s state: ${why}`;
  }
  return undefined;
}

/** Parses and checks our entry of a v86 state: the entry, or throws a VtdStateError naming what is wrong. */
function readEntry(state: unknown[], machine: Machine, platform: Platform, scratch: VtdDevice): MachineEntry {
  const text = state[MACHINE_STATE_INDEX];
  if (typeof text !== "string") throw new VtdStateError("this v86 state holds no VT-d unit (saved from an emulator without attachVtd, or not a v86-vtd state)");
  const binary = state[MACHINE_BINARY_INDEX];
  let entry: MachineEntry;
  try {
    entry = JSON.parse(text, (_key, value: unknown) => {
      if (typeof value !== "object" || value === null || !(BINARY_KEY in value)) return value;
      const part = Array.isArray(binary) ? (binary as unknown[])[(value as Record<string, number>)[BINARY_KEY]!] : undefined;
      if (!(part instanceof Uint8Array)) throw new VtdStateError("the VT-d part of this v86 state is damaged: a binary part it names is missing");
      return part;
    }) as MachineEntry;
  } catch (error) {
    if (error instanceof VtdStateError) throw error;
    throw new VtdStateError("the VT-d part of this v86 state is damaged (not JSON)");
  }
  if (typeof entry !== "object" || entry === null || entry.format !== MACHINE_STATE_FORMAT) throw new VtdStateError(`the VT-d part of this v86 state is not a ${MACHINE_STATE_FORMAT} state`);
  if (entry.version !== MACHINE_STATE_VERSION) throw new VtdStateError(`the VT-d part of this v86 state has version ${String(entry.version)}; this v86-vtd reads version ${MACHINE_STATE_VERSION}`);
  if (typeof entry.crc !== "string" || !entry.crc.startsWith(CRC_MARK)) throw new VtdStateError("the VT-d part of this v86 state has no CRC-32");
  const functions = checkFunctions(entry.functions, platform);
  if (functions) throw new VtdStateError(`the VT-d part of this v86 state is refused: ${functions}`);
  const lines = checkIoApicLines(entry.ioApicLines);
  if (lines) throw new VtdStateError(`the VT-d part of this v86 state is damaged: ${lines}`);
  if (!isDword(entry.configAddress)) throw new VtdStateError("the VT-d part of this v86 state is damaged: the configuration address is not a dword");
  const m = entry.machine;
  if (typeof m !== "object" || m === null || !isCount(m.instructions)) throw new VtdStateError("the VT-d part of this v86 state is damaged: the instruction count is missing");
  if (machine.clock) {
    const why = machine.clock.checkState(m.clock);
    if (why) throw new VtdStateError(`this v86 state cannot go on in this machine: ${why} (the machine must be deterministic with the same options)`);
    if (m.lastSafePoint !== undefined && !(typeof m.lastSafePoint === "number" && m.lastSafePoint >= 0)) throw new VtdStateError("the VT-d part of this v86 state is damaged: the last safe point is not a time");
  } else if (m.clock !== undefined) {
    throw new VtdStateError("this v86 state was saved on a deterministic machine; restore it into one made with the same deterministic options");
  }
  try {
    scratch.restoreState(entry.unit); // checks everything, touches nothing of the running unit
  } catch (error) {
    throw new VtdStateError(`the unit's snapshot in this v86 state is refused: ${error instanceof Error ? error.message : String(error)}`);
  }
  return entry;
}

/** Makes the machine's own v86 PCI restore survive an IDE controller without drives (v86 0.5.462). */
function fixPciRestore(cpu: V86Cpu): void {
  const pci = cpu.devices.pci as unknown as { devices: ({ pci_bars: unknown[] } | undefined)[]; device_spaces: (Int32Array | undefined)[]; set_state(state: unknown[]): void };
  const setState = pci.set_state.bind(pci);
  pci.set_state = (state) => {
    const restoredBars: [Int32Array, number, number][] = [];
    const patched = state.slice();
    for (let bdf = 0; bdf < 256; bdf++) {
      const device = pci.devices[bdf];
      const space = patched[bdf] as Int32Array | undefined;
      if (!device || !(space instanceof Int32Array)) continue;
      for (let bar = 0; bar < device.pci_bars.length; bar++) {
        const value = space[4 + bar]!;
        if (device.pci_bars[bar] || !(value & 1)) continue;
        // An I/O BAR v86 has no record of: keep its bits, but do not let v86 move ports for it.
        if (patched[bdf] === state[bdf]) patched[bdf] = space.slice();
        (patched[bdf] as Int32Array)[4 + bar] = 0;
        restoredBars.push([space, bdf, bar]);
      }
    }
    setState(patched);
    for (const [space, bdf, bar] of restoredBars) pci.device_spaces[bdf]![4 + bar] = space[4 + bar]!;
  };
}

/** Puts the attached machine's state into v86's state, and takes it out again on restore. */
export function installSaveRestore(cpu: V86Cpu, machine: Machine, platform: Platform, vtd: Omit<VtdOptions, "memory" | "onInterrupt">, ownFunctions: number[]): void {
  checksumStates(machine.emulator.v86 as unknown as V86Main);
  const v86 = cpu as unknown as V86State;
  const getState = v86.get_state.bind(cpu);
  const setState = v86.set_state.bind(cpu);
  const unit = platform.device;
  const { checker: _checker, ...unitOptions } = vtd;
  fixPciRestore(cpu);

  v86.get_state = () => {
    const pending = machine.safePoints.pendingActions;
    if (pending > 0) {
      throw new VtdStateError(`cannot save now: ${pending} device action(s) wait for a safe point (a delayed edu DMA, a deferred interrupt); save again after the next tick`);
    }
    const functions = savableFunctions(platform).map(({ bdf, name, device }) => {
      try {
        return { bdf, name, state: device.saveState() };
      } catch (error) {
        throw new VtdStateError(`${name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
    const state = getState();
    const binary: Uint8Array[] = [];
    const entry: MachineEntry = {
      format: MACHINE_STATE_FORMAT,
      version: MACHINE_STATE_VERSION,
      crc: CRC_MARK + CRC_PLACEHOLDER,
      unit: unit.saveState(),
      functions,
      ioApicLines: platform.ioApic.saveState(),
      configAddress: platform.bus.configMechanism.address,
      machine: machine.saveState(),
    };
    state[MACHINE_STATE_INDEX] = JSON.stringify(entry, (_key, value: unknown) => (value instanceof Uint8Array ? { [BINARY_KEY]: binary.push(value) - 1 } : value));
    state[MACHINE_BINARY_INDEX] = binary;
    return state;
  };

  v86.set_state = (state) => {
    if (!Array.isArray(state)) throw new VtdStateError("not a v86 state");
    const scratch = new VtdDevice({ ...unitOptions, memory: new GuestRam(4096) });
    const entry = readEntry(state, machine, platform, scratch);
    // The clock first: v86's set_state re-bases the TSC (and its timers) on the `now` it reads.
    machine.restoreState(entry.machine);
    setState(state);
    unit.restoreState(entry.unit);
    const live = savableFunctions(platform);
    live.forEach(({ device }, i) => device.restoreState(entry.functions[i]!.state));
    platform.bus.resyncAfterRestore();
    platform.ioApic.restoreState(entry.ioApicLines);
    platform.bus.configMechanism.address = entry.configAddress;
    // v86 put our functions' config spaces back byte for byte: decode their BARs where they now point.
    const pci = cpu.devices.pci;
    for (const bdf of ownFunctions) {
      const space = pci.device_spaces[bdf];
      if (space) pci.pci_write16((bdf << 8) | 0x04, space[1]! & 0xffff);
    }
  };
}
