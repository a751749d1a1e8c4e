/**
 * The v86 internals this project uses, typed. v86.d.ts declares only the public emulator API;
 * everything here was read from v86 0.5.462 (build/libv86.mjs, whose property names are not
 * mangled) and is checked at run time by `assertInternals` so an unexpected build fails clearly.
 */

/**
 * v86's `view`: a Proxy that re-creates the typed array over wasm memory on every access
 * (about 0.6 us each). Fine for rare use; hot paths build their own array at `byteOffset`.
 */
export interface V86View {
  [index: number]: number;
  readonly byteOffset: number;
  readonly length: number;
}

export type PortRead = (this: unknown, port: number) => number;
export type PortWrite = (this: unknown, value: number) => void;

export interface V86PortEntry {
  read8: PortRead;
  read16: PortRead;
  read32: PortRead;
  write8: PortWrite;
  write16: PortWrite;
  write32: PortWrite;
  device: unknown;
}

export interface V86Io {
  ports: V86PortEntry[];
  register_read(port: number, device: object, r8?: PortRead, r16?: PortRead, r32?: PortRead): void;
  register_write(port: number, device: object, w8?: PortWrite, w16?: PortWrite, w32?: PortWrite): void;
  /** `addr` and `size` must be multiples of 128 KiB. Handlers get the absolute address as int32, no `this`. */
  mmap_register(
    addr: number,
    size: number,
    read8: (addr: number) => number,
    write8: (addr: number, value: number) => void,
    read32?: (addr: number) => number,
    write32?: (addr: number, value: number) => void,
  ): void;
}

export interface V86PciBar {
  size: number;
  original_bar?: number;
  entries?: unknown[];
}

export interface V86PciDeviceRegistration {
  name: string;
  /** bus << 8 | device << 3 | function; bus 0 only. */
  pci_id: number;
  /** At least 64 bytes of initial config space. */
  pci_space: number[] | Uint8Array;
  pci_bars: (V86PciBar | undefined)[];
}

export interface V86Pci {
  /** Returns the live 256-byte config space; config writes land there without a callback. */
  register_device(device: V86PciDeviceRegistration): Int32Array;
  raise_irq(pciId: number): void;
  lower_irq(pciId: number): void;
  device_spaces: (Int32Array | undefined)[];
  /** PIIX3 ISA bridge config space (PIRQ routing registers at 0x60-0x63). */
  isa_bridge_space8: Uint8Array;
  /** Config-space write entry points; `address` is bdf << 8 | register. */
  pci_write8(address: number, value: number): void;
  pci_write16(address: number, value: number): void;
  pci_write32(address: number, value: number): void;
}

export interface V86Cpu {
  io: V86Io;
  devices: { pci: V86Pci; acpi?: unknown; [name: string]: unknown };
  wasm_memory: WebAssembly.Memory;
  /** Guest RAM (a proxied Uint8Array over wasm memory; slow per element, use byteOffset). */
  mem8: V86View;
  memory_size: V86View;
  in_hlt: V86View;
  instruction_counter: V86View;
  instruction_pointer: V86View;
  previous_ip: V86View;
  reg32: V86View;
  /** Control registers CR0..CR7 (Int32Array view). */
  cr: V86View;
  /** Exports the JIT's generated modules import; overriding an entry affects code compiled later. */
  jit_imports: Record<string, unknown>;
  /** Called between instructions by the main loop; returns ms until the next timer. */
  run_hardware_timers(acpiEnabled: number, now: number): number;
  handle_irqs(): void;
  get_apic_addr(): number;
  get_ioapic_addr(): number;
  device_raise_irq(irq: number): void;
  device_lower_irq(irq: number): void;
  /** Marks JIT code in [start, end) of guest-physical memory stale (what write_blob does). */
  jit_dirty_cache(start: number, end: number): void;
  read_blob(offset: number, length: number): Uint8Array;
  write_blob(blob: Uint8Array, offset: number): void;
  read32s(address: number): number;
  write32(address: number, value: number): void;
  /** fw_cfg (ports 0x510/0x511): the selected item's bytes and the read position. */
  fw_value: Uint8Array | number[];
  fw_pointer: number;
  /**
   * The JIT's hand-over (called from wasm when it has generated a module for `index`): v86
   * compiles the bytes asynchronously, puts the function in `wm.wasm_table` at
   * JIT_TABLE_OFFSET + index and then calls `codegen_finalize_finished`. Replaceable per CPU.
   */
  codegen_finalize(index: number, start: number, stateFlags: number, pointer: number, length: number): void;
  codegen_finalize_finished(index: number, start: number, stateFlags: number): void;
  wm: { wasm_table: WebAssembly.Table };
}

/** Where the JIT's functions start in v86's function table (v86 0.5.462: 1024). */
export const JIT_TABLE_OFFSET = 1024;

/** v86's CMOS/RTC (ports 0x70/0x71). Its clock reads the host's `Date` itself, not v86's `now`. */
export interface V86Rtc {
  /** The RTC's current date (ms since 1970) and the `Date.now()` it was last brought up to. */
  rtc_time: number;
  last_update: number;
  /** Called by the CPU's timers; returns ms until its next interrupt. */
  timer(now: number, legacy: boolean): number;
}

/** v86's ACPI PM timer state (ports 0xB008): it remembers the last value it returned. */
export interface V86Acpi {
  timer_last_value: number;
  timer_imprecision_offset: number;
  last_timer: number;
  get_timer(now: number): number;
}

/** v86's PIT: per channel, the time a count started (ms on v86's clock). */
export interface V86Pit {
  counter_enabled: Uint8Array;
  counter_start_time: Float64Array;
}

/**
 * v86's own main class (emulator.v86's constructor). Its JS devices (PIT, ACPI PM timer, RTC)
 * read the time through the static `microtick`, once per process for all machines.
 */
export interface V86MainClass {
  microtick: () => number;
}

export interface V86Main {
  cpu: V86Cpu;
  running: boolean;
  stopping: boolean;
  do_tick(): void;
  next_tick(delayMs: number): void;
}

/** The parts of the `V86` emulator object used beside its public API. */
export interface V86Emulator {
  v86: V86Main;
  run(): Promise<void>;
  stop(): Promise<void>;
  destroy(): Promise<void>;
  add_listener(event: string, listener: (argument: unknown) => void): void;
  remove_listener(event: string, listener: (argument: unknown) => void): void;
}

/** Fails with a clear message when the running v86 lacks something this project relies on. */
export function assertInternals(emulator: V86Emulator): V86Cpu {
  const cpu = emulator.v86?.cpu;
  if (!cpu) throw new Error("v86 internals: emulator.v86.cpu is missing (expected v86 0.5.462)");
  const missing: string[] = [];
  const functions: (keyof V86Cpu)[] = [
    "run_hardware_timers", "handle_irqs", "get_apic_addr", "jit_dirty_cache", "read_blob", "write_blob", "device_raise_irq", "device_lower_irq",
  ];
  for (const name of functions) if (typeof cpu[name] !== "function") missing.push(`cpu.${name}()`);
  if (typeof cpu.io?.mmap_register !== "function") missing.push("cpu.io.mmap_register()");
  if (typeof cpu.io?.register_write !== "function") missing.push("cpu.io.register_write()");
  if (typeof cpu.devices?.pci?.register_device !== "function") missing.push("cpu.devices.pci.register_device()");
  if (!(cpu.wasm_memory instanceof WebAssembly.Memory)) missing.push("cpu.wasm_memory");
  if (!cpu.jit_imports || typeof cpu.jit_imports !== "object") missing.push("cpu.jit_imports");
  if (typeof emulator.v86.do_tick !== "function") missing.push("v86.do_tick()");
  if (missing.length > 0) throw new Error(`v86 internals missing (expected v86 0.5.462): ${missing.join(", ")}`);
  return cpu;
}
