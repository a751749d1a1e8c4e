/**
 * Runs one fuzz program against the unit (through its public API only) and the oracle, step by
 * step, and stops at the first problem. Checks: no public call throws; every DMA is one the
 * oracle allows (dma.ts); RAM changes only where a permitted DMA or a wait descriptor wrote;
 * fault records; the VFIO shadow after invalidations (shadow.ts); registers' basic answers;
 * the unit's clock; host time per step.
 */
import { GuestRam, NotifierError, VtdDevice, type IommuEvent } from "../../src/vtd-device/index.ts";
import { assignDevice, type VfioAssignment } from "../../src/vfio/index.ts";
import { Cap, Ecap, getField, Reg } from "../../src/spec/index.ts";
import { judgeDma, readFaultRegs } from "./dma.ts";
import { Oracle, type Problem } from "./oracle.ts";
import { dataBytes, dec, patternBytes, type Program, type Step } from "./program.ts";
import { ShadowCheck } from "./shadow.ts";
import { Mem, type Shape } from "./walk.ts";

export interface Failure extends Problem {
  step: number;
}

export interface RunResult {
  failure: Failure | undefined;
  /** Slowest single step (host ms) and its index. */
  worstMs: number;
  worstStep: number;
  steps: number;
  dmas: number;
  shadowChecks: number;
}

export interface RunOptions {
  /** A step slower than this (host ms) is a finding. */
  stepLimitMs: number;
  /** Told of every step and what the unit answered (--trace). */
  trace?: (line: string) => void;
}

let background: Uint8Array | undefined;
/** RAM's initial content: distinct bytes everywhere, so a read shows where it came from. */
function backgroundOf(size: number): Uint8Array {
  if (!background || background.length < size) background = patternBytes(0x5eed, 7, Math.max(size, 4 << 20));
  return background.subarray(0, size);
}

/**
 * RAM and the oracle's copy, kept per size between programs: a program ending with both equal
 * restores only the pages its copy saw written (Mem.dirty); any other end restores everything.
 */
interface Buffers {
  ram: GuestRam;
  mem: Mem;
  clean: boolean;
}
const pool = new Map<number, Buffers>();

function buffersOf(size: number): Buffers {
  let b = pool.get(size);
  if (!b) pool.set(size, (b = { ram: new GuestRam(size), mem: new Mem(new Uint8Array(size)), clean: false }));
  const bg = backgroundOf(size);
  if (!b.clean) {
    b.ram.direct.set(bg);
    b.mem.bytes.set(bg);
  } else {
    for (const page of b.mem.dirty) {
      const from = page * 4096, to = Math.min(size, from + 4096);
      b.ram.direct.set(bg.subarray(from, to), from);
      b.mem.bytes.set(bg.subarray(from, to), from);
    }
  }
  b.mem.dirty.clear();
  b.clean = false;
  return b;
}

const INTERRUPT_THROWS = new Error("fuzz: onInterrupt throws");

export function runProgram(p: Program, options: RunOptions): RunResult {
  const c = p.config;
  const buffers = buffersOf(c.ram);
  const { ram, mem } = buffers;
  const shadow = mem.bytes;
  const unit = new VtdDevice({
    memory: ram,
    awBits: c.awBits,
    cachingMode: c.cachingMode,
    ...(c.cachingMode ? { negativeCaching: c.negativeCaching } : {}),
    checker: c.checker,
    faultRecords: c.faultRecords,
    iotlbEntries: c.iotlbEntries,
    contextCacheEntries: c.contextCacheEntries,
    passThrough: c.passThrough,
    queueDescriptorTimeMs: c.queueDescriptorTimeMs,
    // The oracle (oracle.ts) counts SRTP as invalidating everything: CAP.ESRTPS = 1. ESRTPS = 0
    // (SRTP leaves the caches) is tested in src/vtd-device/memory/write-buffer.test.ts and test/driver-bugs.
    esrtps: true,
    onInterrupt: c.throwingInterrupt ? () => { throw INTERRUPT_THROWS; } : () => {},
  });
  if (c.trace) unit.trace.subscribe(() => {});
  const cap = unit.readRegister(Reg.CAP, 8), ecap = unit.readRegister(Reg.ECAP, 8);
  const mgaw = Number(getField(cap, Cap.MGAW)) + 1;
  const shape: Shape = {
    haw: mgaw, mgaw, sagaw: Number(getField(cap, Cap.SAGAW)), sllps: Number(getField(cap, Cap.SLLPS)), cm: getField(cap, Cap.CM) === 1n,
    pt: getField(ecap, Ecap.PT) === 1n, dt: getField(ecap, Ecap.DT) === 1n, sc: getField(ecap, Ecap.SC) === 1n,
    mamv: Number(getField(cap, Cap.MAMV)), psi: getField(cap, Cap.PSI) === 1n, ram: c.ram,
  };
  const records = Number(getField(cap, Cap.NFR)) + 1;
  const oracle = new Oracle(mem, shape, unit.registerWindowSize);
  const shadowCheck = new ShadowCheck(oracle);
  const assignments: VfioAssignment[] = [];
  const throwingNotifiers = new Set<unknown>();
  const problems: Problem[] = [];
  unit.notifiers.onNotifierError = (report) => {
    if (!throwingNotifiers.has(report.notifier)) problems.push({ check: "shadow", message: `a notifier of sid 0x${report.sid.toString(16)} failed on ${eventText(report.event)}: ${String(report.error)}` });
  };
  unit.notifiers.onWalkLimit = (space) => {
    shadowCheck.walkLimited.add(space.sid);
    shadowCheck.walkLimitedThisStep.add(space.sid);
  };
  const read = (off: number, size: 4 | 8) => unit.readRegister(off, size);
  let worstMs = 0, worstStep = -1, dmas = 0, clock = unit.now, lastAnswer = "";

  let resynced = false;
  /** The oracle cannot say what moved: its copy takes RAM as it is. */
  const resync = () => {
    shadow.set(ram.direct);
    resynced = true;
  };
  const result = (failure: Failure | undefined): RunResult => {
    buffers.clean = failure === undefined && !resynced;
    return { failure, worstMs, worstStep, steps: p.steps.length, dmas, shadowChecks: shadowCheck.checks };
  };
  const ramChanged = (): Problem | undefined => {
    if (Buffer.compare(ram.direct, shadow) === 0) return undefined;
    let i = 0;
    while (ram.direct[i] === shadow[i]) i++;
    return { check: "memory", message: `RAM at 0x${i.toString(16)} changed (0x${shadow[i]!.toString(16)} → 0x${ram.direct[i]!.toString(16)}) where no permitted DMA or wait descriptor wrote` };
  };

  for (let i = 0; i < p.steps.length; i++) {
    const step = p.steps[i]!;
    if (step.op === "mz" || step.op === "mq") {
      cpuWrite(step, ram.direct, mem);
      continue;
    }
    let compare = false;
    const t0 = performance.now();
    try {
      compare = perform(step);
      options.trace?.(`#${i} ${JSON.stringify(step)} -> ${lastAnswer} | TE ${oracle.te ? 1 : 0} root 0x${oracle.rootTable.toString(16)} QI ${oracle.qies ? 1 : 0}`);
    } catch (error) {
      return result({ step: i, check: "throw", message: `${step.op} threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}` });
    }
    const ms = performance.now() - t0;
    if (ms > worstMs) ((worstMs = ms), (worstStep = i));
    if (ms > options.stepLimitMs) problems.push({ check: "time", message: `step took ${ms.toFixed(0)} ms of host time (limit ${options.stepLimitMs} ms)` });
    try {
      oracle.afterStep(read);
    } catch (error) {
      return result({ step: i, check: "throw", message: `readRegister threw ${String(error)}` });
    }
    if (options.trace && oracle.events.length > 0) options.trace(`   events: ${oracle.events.map((e) => JSON.stringify(e)).join(" ")}; IQH ${read(Reg.IQH, 8)}`);
    oracle.applyEvents();
    const found = [...oracle.problems.splice(0), ...shadowCheck.afterEvents(oracle.events, assignments, oracle.statusWrites)];
    for (const w of oracle.statusWrites) {
      // A wait descriptor's status write: checked where it goes (anything else shows at the final compare).
      if (ram.direct.subarray(w.address, w.address + 4).some((b, k) => b !== shadow[w.address + k])) {
        found.push({ check: "memory", message: `wait descriptor status write: 0x${w.data.toString(16)} expected at 0x${w.address.toString(16)}` });
      }
    }
    oracle.events = [];
    oracle.statusWrites = [];
    if (oracle.lostTrackOfRam) {
      oracle.lostTrackOfRam = false;
      resync();
    }
    if (oracle.lenient) {
      // The oracle lost track (see Oracle.lenient): keep only the checks that need no model.
      resync();
      problems.splice(0, problems.length, ...problems.filter((x) => x.check === "time" || x.check === "throw"));
    } else problems.push(...found);
    if (compare && !oracle.lenient) {
      const changed = ramChanged();
      if (changed) problems.push(changed);
    }
    if (!Number.isFinite(unit.now) || unit.now < clock) problems.push({ check: "clock", message: `the unit's clock went from ${clock} to ${unit.now}` });
    clock = unit.now;
    if (problems.length > 0) return result({ step: i, ...problems[0]! });
  }
  const changed = ramChanged();
  return result(changed ? { step: p.steps.length, ...changed } : undefined);

  /** Performs one step on the unit; true when RAM must be compared after it. */
  function perform(step: Step): boolean {
    lastAnswer = "";
    switch (step.op) {
      case "w": {
        const off = dec(step.off), size = dec(step.size), value = dec(step.value);
        oracle.write(off, size, value);
        unit.writeRegister(off as number, size as 4, value as bigint);
        return false;
      }
      case "r": {
        const size = dec(step.size);
        const v: unknown = unit.readRegister(dec(step.off) as number, size as 4);
        lastAnswer = String(v);
        const bytes = size === 1 || size === 2 || size === 4 || size === 8 ? size : 8;
        if (typeof v !== "bigint" || v < 0n || v >= 1n << BigInt(8 * bytes)) problems.push({ check: "register", message: `readRegister(${String(step.off)}, ${String(step.size)}) returned ${String(v)}` });
        return false;
      }
      case "dma": {
        dmas++;
        const sid = dec(step.sid) as number, iova = dec(step.iova);
        const bytes = dataBytes(step.tag, step.write ? 1 : 2, step.len);
        const fill = bytes.slice();
        const before = readFaultRegs(read, records);
        const r = step.write ? unit.dmaWrite(sid, iova, bytes) : unit.dmaRead(sid, iova, bytes);
        const after = readFaultRegs(read, records);
        lastAnswer = `${r.ok ? "ok" : `fail 0x${r.reason.toString(16)}`}; FSTS 0x${after.fsts.toString(16)} FRCD ${after.frcd.map((f) => `${f.hi.toString(16)}:${f.lo.toString(16)}`).join(" ")}`;
        const request = { sid, iova, write: step.write, bytes, fill, ok: r.ok, reason: r.ok ? 0 : r.reason };
        if (oracle.lenient) return false;
        if (oracle.te && !oracle.rootKnown) {
          // Translation on without SRTP since reset: the root table in use is undefined.
          resync();
          return false;
        }
        if (Number.isInteger(sid) && sid >= 0 && sid <= 0xffff) problems.push(...judgeDma(oracle, mem, ram.direct, request, before, after));
        else {
          // Not a requester id: taken modulo 2^16, or refused.
          const asId = judgeDma(oracle, mem, ram.direct, { ...request, sid: Number(BigInt.asUintN(16, BigInt(Math.trunc(sid)))) }, before, after);
          const moved = step.write ? Buffer.compare(ram.direct, shadow) !== 0 : Buffer.compare(bytes, fill) !== 0;
          if (asId.length > 0 && (r.ok || moved)) problems.push(...asId);
        }
        return step.write;
      }
      case "time":
        unit.advanceTime(dec(step.ms) as number);
        return false;
      case "assign": {
        shadowCheck.listen(step.sid);
        try {
          assignments.push(assignDevice(unit, step.sid));
          if (!c.cachingMode) problems.push({ check: "api", message: "assignDevice succeeded with CAP.CM = 0 (a MAP notifier needs caching mode)" });
        } catch (error) {
          if (!(error instanceof NotifierError) || c.cachingMode) throw error;
        }
        return false;
      }
      case "notify": {
        const notifier = (event: IommuEvent) => {
          const size = event.addressMask + 1;
          if (![1, 2, 4].includes(event.type) || !Number.isInteger(Math.log2(size)) || size < 4096 || event.iova % size !== 0 || event.iova + size > 2 ** c.awBits) {
            problems.push({ check: "notifier", message: `malformed event ${eventText(event)}` });
          }
          if (step.throws) throw new Error("fuzz: notifier throws");
        };
        if (step.throws) throwingNotifiers.add(notifier);
        try {
          unit.notifiers.addressSpace(step.sid).register(notifier, { events: step.events, range: { start: dec(step.start), end: dec(step.end) } });
          shadowCheck.listen(step.sid);
        } catch (error) {
          if (!(error instanceof NotifierError)) throw error;
        }
        return false;
      }
      case "vdma": {
        const vfio = assignments.find((a) => a.sid === step.sid);
        if (!vfio) return false;
        const bytes = dataBytes(step.tag, 3, step.len);
        if (!step.write) {
          vfio.device.dmaRead(step.iova, bytes);
          return false;
        }
        const r = vfio.device.dmaWrite(step.iova, bytes);
        // The assigned device writes through the shadow's host mappings as they stand (stale until
        // an invalidation lets the notifiers change them, as with real VFIO), page by page in
        // order, stopping at the first page without a writable mapping or with its target outside
        // RAM. Pieces may alias (several IOVA pages onto one host page, e.g. a table mapped onto
        // itself): a later piece overwrites an earlier one, so the copy is replayed in order.
        let expectOk = true;
        for (let done = 0; done < bytes.length; ) {
          const at = step.iova + done;
          const chunk = Math.min(bytes.length - done, 4096 - (at % 4096));
          const m = vfio.hostIommu.lookup(at);
          if (!m || (m.permission & 2) === 0) {
            expectOk = false;
            break;
          }
          const target = m.hostAddress + (at - m.iova);
          if (target + chunk > c.ram) {
            expectOk = false;
            break;
          }
          mem.set(bytes.subarray(done, done + chunk), target);
          done += chunk;
        }
        lastAnswer = r.ok ? "ok" : `fail 0x${r.reason.toString(16)}`;
        if (r.ok !== expectOk) problems.push({ check: "dma", message: `assigned device's write of ${step.len} bytes at 0x${step.iova.toString(16)} answered ${lastAnswer}; its shadow's mappings say ${expectOk ? "ok" : "a fault or abort"}` });
        return true;
      }
      case "reset":
        oracle.reset();
        unit.reset();
        clock = unit.now;
        return false;
      default:
        return false;
    }
  }
}

function cpuWrite(step: Step & { op: "mz" | "mq" }, ram: Uint8Array, mem: Mem): void {
  let bytes: Uint8Array;
  if (step.op === "mz") bytes = new Uint8Array(Math.max(0, step.len));
  else {
    bytes = new Uint8Array(step.vals.length * 8);
    const view = new DataView(bytes.buffer);
    step.vals.forEach((hex, k) => {
      const digits = hex.slice(2).padStart(16, "0").slice(-16);
      view.setUint32(k * 8, parseInt(digits.slice(8), 16), true);
      view.setUint32(k * 8 + 4, parseInt(digits.slice(0, 8), 16), true);
    });
  }
  // Only the part inside RAM.
  const from = Math.max(0, step.addr), to = Math.min(ram.length, step.addr + bytes.length);
  if (from >= to) return;
  const part = bytes.subarray(from - step.addr, to - step.addr);
  ram.set(part, from);
  mem.set(part, from);
}

function eventText(e: IommuEvent): string {
  return `{type ${e.type}, iova 0x${e.iova.toString(16)}, mask 0x${e.addressMask.toString(16)}, out 0x${e.translatedAddress.toString(16)}, perm ${e.permission}}`;
}
