/**
 * Detaching: attaching replaces v86 functions and handlers in many places (the MMIO block, the
 * configuration and fw_cfg ports, the timers and tick, the PCI bus's write entry points and state,
 * the JIT's imports, the RTC). Rather than each part remembering what it replaced, everything
 * attaching can touch is recorded before it starts and put back on detach: the emulator is then
 * as it was before attachVtd, except for guest RAM and what the guest did meanwhile.
 */
import type { V86Cpu, V86Emulator } from "./internals.ts";

/** Own properties of an object, as they were (absent ones deleted again). */
function recordProperties(target: object, names: readonly string[]): () => void {
  const record = target as Record<string, unknown>;
  const saved = names.map((name) => ({ name, own: Object.prototype.hasOwnProperty.call(target, name), value: record[name] }));
  return () => {
    for (const { name, own, value } of saved) {
      if (own) record[name] = value;
      else delete record[name];
    }
  };
}

/** The elements of an array (or an object's entries), put back in place. */
function recordElements(target: unknown[] | Record<string, unknown>): () => void {
  if (Array.isArray(target)) {
    const copy = target.slice();
    return () => {
      target.length = 0;
      for (let i = 0; i < copy.length; i++) target[i] = copy[i];
    };
  }
  const copy = { ...target };
  return () => {
    for (const key of Object.keys(target)) if (!(key in copy)) delete target[key];
    Object.assign(target, copy);
  };
}

const PORT_FIELDS = ["read8", "read16", "read32", "write8", "write16", "write32", "device"] as const;

/** Records everything attachVtd may replace on this emulator; the function returned puts it all back. */
export function recordV86(emulator: V86Emulator, cpu: V86Cpu): () => void {
  const undo: (() => void)[] = [];
  undo.push(recordProperties(emulator, ["add_listener", "remove_listener"]));
  undo.push(recordProperties(emulator.v86, ["do_tick", "next_tick", "save_state", "restore_state"]));
  undo.push(recordProperties(cpu, ["run_hardware_timers", "codegen_finalize", "get_state", "set_state", "fw_value", "fw_pointer", "device_raise_irq", "device_lower_irq"]));
  undo.push(recordElements(cpu.jit_imports));
  const ports = cpu.io.ports.map((entry) => (entry ? { ...entry } : entry));
  undo.push(() => {
    cpu.io.ports.forEach((entry, port) => {
      const saved = ports[port];
      if (entry && saved) for (const field of PORT_FIELDS) (entry as unknown as Record<string, unknown>)[field] = saved[field];
    });
  });
  const maps = cpu as unknown as Record<string, unknown>;
  for (const name of ["memory_map_read8", "memory_map_write8", "memory_map_read32", "memory_map_write32"]) {
    const map = maps[name];
    if (Array.isArray(map)) undo.push(recordElements(map));
  }
  const pci = cpu.devices.pci as unknown as Record<string, unknown>;
  undo.push(recordProperties(pci, ["pci_write8", "pci_write16", "pci_write32", "set_state"]));
  for (const name of ["devices", "device_spaces"]) {
    const list = pci[name];
    if (Array.isArray(list)) undo.push(recordElements(list));
  }
  const rtc = cpu.devices.rtc;
  if (rtc && typeof rtc === "object") undo.push(recordProperties(rtc, ["timer"]));
  return () => {
    for (const step of undo.reverse()) step();
  };
}
