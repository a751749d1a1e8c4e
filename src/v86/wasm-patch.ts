/**
 * CLFLUSH for v86: its interpreter raises #UD on `0F AE /7` (memory form). We patch the loaded
 * wasm bytes in memory (never the file under node_modules) after checking the bytes around the
 * site, so an unknown build is refused instead of corrupted.
 *
 * The site, in v86 0.5.462's build/v86.wasm (function 2393, the 0F-opcode interpreter):
 *   local.get 1; i32.const 4032; i32.add; local.get 0; call modrm_resolve   ; result at [frame+4032]
 *   local.get 1; i32.load offset=4032; i32.const 1; i32.and; br_if 143       ; page fault: leave
 *   call trigger_ud                                  <- 6 bytes at file offset 0xE8FC6
 *   br 101
 * The 6 bytes become `local.get 1; call <env.jit_clear_func>` (LEB padded to 3 bytes): the frame
 * pointer goes to that import, which never sees values >= JIT_TABLE_SIZE otherwise; the platform
 * wraps it and reads the resolved linear address at [frame + 4036]. So the interpreter reports
 * each CLFLUSH with its address, and the JIT path reports through `jit_imports.instr_0FAE_7_mem`.
 */
export const V86_VERSION = "0.5.462";

export const CLFLUSH_SITE = {
  offset: 0xe8fc6,
  /** i32.load offset=4032; i32.const 1; i32.and; br_if 143 */
  before: [0x28, 0x02, 0xc0, 0x1f, 0x41, 0x01, 0x71, 0x0d, 0x8f, 0x01],
  /** call 2055 (trigger_ud), LEB128 padded to 5 bytes */
  original: [0x10, 0x87, 0x90, 0x80, 0x80, 0x00],
  /** br 101 */
  after: [0x0c, 0x65],
} as const;

/**
 * The I/O APIC for interrupt remapping: v86's I/O APIC keeps only bits 63:56 of a redirection entry
 * (the xAPIC destination) when the guest writes the upper dword, so a remappable-format entry
 * (VT-d §5.1.5.1: interrupt format bit 48, interrupt index in 63:49) loses its format and most of
 * its index. In 0.5.462's build (the I/O APIC write, function at file offset ~0xCB000):
 *   local.get 3; i32.const 255; i32.and; i32.const 2; i32.shl      ; irq * 4
 *   local.get 1; i32.const 0xFF000000; i32.and                     <- 6 bytes at 0xCB8D5
 *   i32.store offset=0x8BD0                                         ; ioredtbl_destination[irq]
 * The mask becomes `i32.const -1; i32.and; nop; nop; nop`: the whole upper dword is kept, as on
 * QEMU's I/O APIC. v86 itself still reads only bits 31:24 of it (the destination).
 */
export const IOAPIC_DESTINATION_SITE = {
  offset: 0xcb8d5,
  /** local.get 3; i32.const 255; i32.and; i32.const 2; i32.shl; local.get 1 */
  before: [0x20, 0x03, 0x41, 0xff, 0x01, 0x71, 0x41, 0x02, 0x74, 0x20, 0x01],
  /** i32.const 0xFF000000; i32.and */
  original: [0x41, 0x80, 0x80, 0x80, 0x78, 0x71],
  /** i32.store align=2 offset=0x8BD0 */
  after: [0x36, 0x02, 0xd0, 0x97, 0x82, 0x80, 0x00],
} as const;
const IOAPIC_KEEP_ALL = [0x41, 0x7f, 0x71, 0x01, 0x01, 0x01];

/** The import the patched interpreter calls, and the frame-relative offset of modrm_resolve's address. */
export const CLFLUSH_HOOK_IMPORT = { module: "env", name: "jit_clear_func" } as const;
export const CLFLUSH_FRAME_ADDRESS_OFFSET = 4032 + 4;
/** v86's JIT table holds 900 functions: jit_clear_func's real arguments are 0..899. */
export const JIT_TABLE_SIZE = 900;

function hex(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Reads an unsigned LEB128 at `at`; returns [value, next offset]. */
function readLeb(bytes: Uint8Array, at: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined) throw new Error("v86.wasm: truncated LEB128");
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [result, at];
  }
}

function readName(bytes: Uint8Array, at: number): [string, number] {
  const [length, start] = readLeb(bytes, at);
  return [new TextDecoder().decode(bytes.subarray(start, start + length)), start + length];
}

/** Index of the imported function `module.name` and its type's parameter/result value types. */
export function findFunctionImport(wasm: Uint8Array, module: string, name: string): { index: number; params: number[]; results: number[] } {
  if (wasm.length < 8 || wasm[0] !== 0x00 || wasm[1] !== 0x61 || wasm[2] !== 0x73 || wasm[3] !== 0x6d) {
    throw new Error("v86.wasm: not a WebAssembly module");
  }
  const types: { params: number[]; results: number[] }[] = [];
  let at = 8;
  while (at < wasm.length) {
    const id = wasm[at]!;
    const [size, start] = readLeb(wasm, at + 1);
    let p = start;
    if (id === 1) {
      const [count, next] = readLeb(wasm, p);
      p = next;
      for (let i = 0; i < count; i++) {
        p++; // 0x60 func
        const [paramCount, afterParams] = readLeb(wasm, p);
        const params = Array.from(wasm.subarray(afterParams, afterParams + paramCount));
        const [resultCount, afterResults] = readLeb(wasm, afterParams + paramCount);
        const results = Array.from(wasm.subarray(afterResults, afterResults + resultCount));
        p = afterResults + resultCount;
        types.push({ params, results });
      }
    } else if (id === 2) {
      const [count, next] = readLeb(wasm, p);
      p = next;
      let functionIndex = 0;
      for (let i = 0; i < count; i++) {
        const [moduleName, afterModule] = readName(wasm, p);
        const [fieldName, afterField] = readName(wasm, afterModule);
        const kind = wasm[afterField]!;
        p = afterField + 1;
        if (kind === 0) {
          const [typeIndex, afterType] = readLeb(wasm, p);
          p = afterType;
          if (moduleName === module && fieldName === name) {
            const type = types[typeIndex];
            if (!type) throw new Error(`v86.wasm: import ${module}.${name} has unknown type ${typeIndex}`);
            return { index: functionIndex, ...type };
          }
          functionIndex++;
        } else if (kind === 1) {
          p++; // reftype
          const [flags, afterFlags] = readLeb(wasm, p);
          p = readLeb(wasm, afterFlags)[1];
          if (flags & 1) p = readLeb(wasm, p)[1];
        } else if (kind === 2) {
          const [flags, afterFlags] = readLeb(wasm, p);
          p = readLeb(wasm, afterFlags)[1];
          if (flags & 1) p = readLeb(wasm, p)[1];
        } else if (kind === 3) {
          p += 2;
        } else {
          throw new Error(`v86.wasm: unknown import kind ${kind}`);
        }
      }
      break;
    }
    at = start + size;
  }
  throw new Error(`v86.wasm: no function import ${module}.${name}`);
}

type PatchSite = { offset: number; before: readonly number[]; original: readonly number[]; after: readonly number[] };

/** Throws, naming the expected bytes, when the bytes around `site` are not those of v86 0.5.462. */
function checkSite(wasm: Uint8Array, site: PatchSite, what: string): void {
  const { offset, before, original, after } = site;
  const expected = [...before, ...original, ...after];
  const start = offset - before.length;
  const found = wasm.subarray(start, start + expected.length);
  if (found.length !== expected.length || expected.some((b, i) => found[i] !== b)) {
    throw new Error(
      `v86.wasm is not the build this project patches (v86 ${V86_VERSION}, ${what}): expected bytes ${hex(expected)} ` +
        `at file offset 0x${start.toString(16)}, found ${hex(found)}. Pin the npm package v86@${V86_VERSION}.`,
    );
  }
}

/**
 * Everything this project changes in v86.wasm, on a copy: CLFLUSH (patchClflush) and the I/O
 * APIC's full redirection entries for interrupt remapping (IOAPIC_DESTINATION_SITE). What
 * `Machine` needs; throws, naming the bytes, for any other build than v86 0.5.462's.
 */
export function patchV86Wasm(wasm: Uint8Array): Uint8Array<ArrayBuffer> {
  checkSite(wasm, IOAPIC_DESTINATION_SITE, "I/O APIC");
  const patched = patchClflush(wasm);
  patched.set(IOAPIC_KEEP_ALL, IOAPIC_DESTINATION_SITE.offset);
  return patched;
}

/**
 * Returns a patched copy of v86.wasm in which CLFLUSH calls the hook import instead of raising #UD.
 * Throws, naming the expected bytes, when the bytes at the site are not those of v86 0.5.462.
 */
export function patchClflush(wasm: Uint8Array): Uint8Array<ArrayBuffer> {
  checkSite(wasm, CLFLUSH_SITE, "CLFLUSH");
  const { offset } = CLFLUSH_SITE;
  const hook = findFunctionImport(wasm, CLFLUSH_HOOK_IMPORT.module, CLFLUSH_HOOK_IMPORT.name);
  if (hook.params.length !== 1 || hook.params[0] !== 0x7f || hook.results.length !== 0 || hook.index >= 1 << 21) {
    throw new Error(`v86.wasm: import ${CLFLUSH_HOOK_IMPORT.name} is not a function (i32) -> () with a small index`);
  }
  const patched = new Uint8Array(wasm);
  // local.get 1; call <hook> with a 3-byte LEB128 function index: 2 + 1 + 3 = 6 bytes, the size of the call it replaces.
  patched.set([0x20, 0x01, 0x10, (hook.index & 0x7f) | 0x80, ((hook.index >> 7) & 0x7f) | 0x80, (hook.index >> 14) & 0x7f], offset);
  return patched;
}
