/**
 * A tiny multiboot guest that keeps v86's CPU busy while a host-side program (the guest driver on
 * its v86 platform) owns the machine: it counts loop iterations in a heartbeat word and watches a
 * mailbox word; a non-zero mailbox makes it exit through port 0xF4 with the mailbox's low byte.
 * It never halts (so v86 runs its slices back to back and safe points keep coming) and touches
 * nothing but its own two pages. Generated here, no toolchain. No node: imports.
 *
 * It runs with interrupts ON, behind its own GDT and IDT, with both 8259s masked. It expects none
 * (the driver's MSIs are consumed before the LAPIC): an interrupt that comes anyway is counted,
 * acknowledged and returned from; an exception exits with code 0xEE. Interrupts must be on
 * because of how v86 and the safe points meet: a deferred action queued while the CPU is outside
 * its loop (a host-side register write) stops it with `in_hlt`, and v86's main loop treats
 * `in_hlt` with IF = 0 as a CPU halted for good, never running the timers that would clear it.
 *
 *   entry:  cli; lgdt; lidt; mov esp, STACK_TOP; jmp 0x08:flat; mov ds/es/ss/fs/gs, 0x10
 *           mask both PICs; sti
 *   loop:   inc dword [HEARTBEAT]; mov eax, [MAILBOX]; test eax, eax; jz loop
 *           cli; out 0xF4, al; jmp $
 *   irq:    push eax; inc dword [INTERRUPTS]; LAPIC EOI; PIC EOIs; pop eax; iret
 *   fault:  cli; mov al, 0xEE; out 0xF4, al; jmp $
 *
 * The data page (counters, stack) is separate from the code page so the loop's stores never
 * invalidate v86's JIT-compiled code.
 */
import { LOCAL_APIC_BASE } from "../spec/platform.ts";
import type { Machine, MachineOutcome } from "./machine.ts";
import type { GuestMemory } from "../vtd-device/memory/guest-memory.ts";

const MULTIBOOT_MAGIC = 0x1bad_b002;
/** Multiboot header flag 16: the header's address fields say where to load the image. */
const FLAG_ADDRESS_FIELDS = 1 << 16;
const HEADER_BYTES = 32;

/** Where the image is loaded (its multiboot header first, then the code). */
export const IDLE_GUEST_LOAD = 0x10_0000;
/** Counts loop iterations (a 32-bit word that wraps). */
export const IDLE_GUEST_HEARTBEAT = 0x10_1000;
/** Non-zero: exit with its low byte as the code. */
export const IDLE_GUEST_MAILBOX = 0x10_1004;
/** Interrupts the guest took (it expects none). */
export const IDLE_GUEST_INTERRUPTS = 0x10_1008;
/** The exit code of a guest that took an exception. */
export const IDLE_GUEST_EXCEPTION_EXIT = 0xee;
/** Every byte the idle guest uses: [IDLE_GUEST_LOAD, IDLE_GUEST_END). */
export const IDLE_GUEST_END = 0x10_2000;

const STACK_TOP = IDLE_GUEST_END;
const GDT = IDLE_GUEST_LOAD + 0x200;
const GDTR = GDT + 0x20;
const IDTR = GDT + 0x30;
const IDT = IDLE_GUEST_LOAD + 0x800;
const CODE_SELECTOR = 0x08;
const DATA_SELECTOR = 0x10;
const LAPIC_EOI = LOCAL_APIC_BASE + 0xb0;
const PIC1_COMMAND = 0x20, PIC1_DATA = 0x21, PIC2_COMMAND = 0xa0, PIC2_DATA = 0xa1;
const PIC_EOI = 0x20;
const EXIT_PORT = 0xf4;
/** Vectors 0-31 are exceptions. */
const EXCEPTIONS = 32;

const le16 = (v: number) => [v & 0xff, (v >>> 8) & 0xff];
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** The guest's code from `entry`, with the addresses of its routines. */
function code(entry: number): { bytes: number[]; irq: number; fault: number } {
  const bytes: number[] = [];
  const here = () => entry + bytes.length;
  const emit = (...b: number[]) => bytes.push(...b);
  emit(0xfa); // cli
  emit(0x0f, 0x01, 0x15, ...le32(GDTR)); // lgdt [GDTR]
  emit(0x0f, 0x01, 0x1d, ...le32(IDTR)); // lidt [IDTR]
  emit(0xbc, ...le32(STACK_TOP)); // mov esp, STACK_TOP
  emit(0xea, ...le32(here() + 7), ...le16(CODE_SELECTOR)); // jmp 0x08:next
  emit(0xb8, ...le32(DATA_SELECTOR)); // mov eax, 0x10
  for (const sreg of [0xd8, 0xc0, 0xd0, 0xe0, 0xe8]) emit(0x8e, sreg); // mov ds/es/ss/fs/gs, ax
  emit(0xb0, 0xff, 0xe6, PIC1_DATA, 0xe6, PIC2_DATA); // mov al, 0xFF; out 0x21, al; out 0xA1, al
  emit(0xfb); // sti
  const loop = here();
  emit(0xff, 0x05, ...le32(IDLE_GUEST_HEARTBEAT)); // inc dword [HEARTBEAT]
  emit(0xa1, ...le32(IDLE_GUEST_MAILBOX)); // mov eax, [MAILBOX]
  emit(0x85, 0xc0); // test eax, eax
  emit(0x74, (loop - (here() + 2)) & 0xff); // jz loop
  emit(0xfa, 0xe6, EXIT_PORT, 0xeb, 0xfe); // cli; out 0xF4, al; jmp $
  const irq = here();
  emit(0x50); // push eax
  emit(0xff, 0x05, ...le32(IDLE_GUEST_INTERRUPTS)); // inc dword [INTERRUPTS]
  emit(0xc7, 0x05, ...le32(LAPIC_EOI), ...le32(0)); // mov dword [LAPIC EOI], 0
  emit(0xb0, PIC_EOI, 0xe6, PIC2_COMMAND, 0xe6, PIC1_COMMAND); // mov al, 0x20; out 0xA0, al; out 0x20, al
  emit(0x58, 0xcf); // pop eax; iret
  const fault = here();
  emit(0xfa, 0xb0, IDLE_GUEST_EXCEPTION_EXIT, 0xe6, EXIT_PORT, 0xeb, 0xfe); // cli; mov al, 0xEE; out 0xF4, al; jmp $
  return { bytes, irq, fault };
}

/** A 32-bit interrupt gate (present, DPL 0) to `handler` in the code segment. */
function interruptGate(handler: number): number[] {
  return [...le16(handler & 0xffff), ...le16(CODE_SELECTOR), 0, 0x8e, ...le16(handler >>> 16)];
}

/** The flat multiboot image (the header's address fields, no ELF), including its zeroed data page. */
export function idleGuestImage(): Uint8Array {
  const image = new Uint8Array(IDLE_GUEST_END - IDLE_GUEST_LOAD);
  const at = (address: number) => address - IDLE_GUEST_LOAD;
  const view = new DataView(image.buffer);
  const entry = IDLE_GUEST_LOAD + HEADER_BYTES;
  const fields = [
    MULTIBOOT_MAGIC,
    FLAG_ADDRESS_FIELDS,
    (-(MULTIBOOT_MAGIC + FLAG_ADDRESS_FIELDS)) >>> 0, // checksum
    IDLE_GUEST_LOAD, // header_addr
    IDLE_GUEST_LOAD, // load_addr
    0, // load_end_addr: the whole file
    0, // bss_end_addr: none (the data page is in the file)
    entry, // entry_addr
  ];
  fields.forEach((value, i) => view.setUint32(4 * i, value, true));
  const program = code(entry);
  if (entry + program.bytes.length > GDT) throw new Error("idle guest: code overlaps the GDT");
  image.set(program.bytes, at(entry));
  // GDT: null, flat 4 GiB code (0x08), flat 4 GiB data (0x10); then the GDTR and IDTR operands.
  image.set([...le32(0), ...le32(0), ...le32(0x0000_ffff), ...le32(0x00cf_9a00), ...le32(0x0000_ffff), ...le32(0x00cf_9200)], at(GDT));
  image.set([...le16(3 * 8 - 1), ...le32(GDT)], at(GDTR));
  image.set([...le16(256 * 8 - 1), ...le32(IDT)], at(IDTR));
  for (let vector = 0; vector < 256; vector++) image.set(interruptGate(vector < EXCEPTIONS ? program.fault : program.irq), at(IDT + 8 * vector));
  return image;
}

function read32(memory: GuestMemory, address: number): number {
  const bytes = new Uint8Array(4);
  memory.read(BigInt(address), bytes);
  return new DataView(bytes.buffer).getUint32(0, true);
}

/** A machine booted from `idleGuestImage()`, running in the background until asked to exit. */
export class IdleGuest {
  /** Settles when the machine has stopped (the guest exited, the time limit passed, or v86 failed). */
  readonly outcome: Promise<MachineOutcome>;

  private constructor(private readonly machine: Machine, timeoutMs: number) {
    this.outcome = machine.run(timeoutMs);
    this.outcome.catch(() => {}); // observed by whoever awaits `outcome` or `exit`
  }

  /** Starts `machine` (booted from the idle image); it runs until `exit` or `timeoutMs` of wall time. */
  static start(machine: Machine, timeoutMs = 30 * 60_000): IdleGuest {
    return new IdleGuest(machine, timeoutMs);
  }

  /** Loop iterations so far: it grows only while v86 executes the guest. */
  get heartbeat(): number {
    return read32(this.machine.memory, IDLE_GUEST_HEARTBEAT);
  }

  /** Interrupts the guest took (none is expected). */
  get interruptsTaken(): number {
    return read32(this.machine.memory, IDLE_GUEST_INTERRUPTS);
  }

  /** Asks the guest to exit with `code` and waits for the machine to stop. */
  async exit(code = 0): Promise<MachineOutcome> {
    const word = new Uint8Array(le32(0x100 | (code & 0xff)));
    this.machine.memory.write(BigInt(IDLE_GUEST_MAILBOX), word);
    return this.outcome;
  }
}
