/**
 * The VFIO shadow check: after every invalidation that covers an assigned requester id, the
 * host mappings the shadow holds (src/vfio's public API) must equal the reference walk over the
 * range the invalidation covers (everything for SRTP, TE, reset, context-cache invalidations and
 * global/domain IOTLB ones; the page range for page-selective ones).
 *
 * The notifiers read a context at a context-level sync and keep it (as a context cache would):
 * when the guest changed the root or context entry since, without such a sync, which context
 * the unit may use is open, and the check waits for the next context-level sync.
 */
import type { VfioAssignment } from "../../src/vfio/index.ts";
import type { Inval, Oracle, Problem, StatusWrite } from "./oracle.ts";
import { enumerate, normalise, walkContext, withoutInterruptRange, type Run } from "./walk.ts";

/** More leaves or tables than this in one reference walk: the check is skipped (aliased tables). */
const REFERENCE_LIMIT = 20_000;

interface SpaceView {
  /** Root and context entries, TE, TTM, root table as of the last context-level sync. */
  snapshot: string;
  /** DID the notifiers file this space under (0 for a faulting context). */
  tag: number;
  /**
   * A context invalidation that may or may not have reached this space (one the spec does not
   * require to, which the unit may still honour) came while the entries differed from the
   * snapshot: which context the notifiers hold is open until a global one.
   */
  ambiguous?: boolean;
}

export class ShadowCheck {
  private spaces = new Map<number, SpaceView>();
  /**
   * Requester ids whose sync went past a bound of the unit (reported through onWalkLimit): the
   * unit unmapped them whole and mirrors nothing until their next context-level sync, so the
   * check waits for one (a context invalidation covering the space, SRTP, TE, reset).
   */
  readonly walkLimited = new Set<number>();
  /**
   * Requester ids reported through onWalkLimit during the step in progress (run.ts adds to both):
   * a context-level invalidation of the step clears `walkLimited` only for the others, since the
   * unit may have been cut at that very sync.
   */
  walkLimitedThisStep = new Set<number>();
  checks = 0;

  constructor(private readonly o: Oracle) {}

  private view(sid: number): SpaceView {
    const o = this.o, mem = o.mem;
    const hex = (at: number) => (mem.has(at, 16) ? [0, 4, 8, 12].map((d) => mem.u32(at + d).toString(16)).join(".") : "-");
    const rootEntry = o.rootTable + (sid >> 8) * 16;
    let ctxEntry = "-";
    if (mem.has(rootEntry, 16)) {
      const ctp = (mem.u32(rootEntry + 4) & 0xfffff) * 2 ** 32 + ((mem.u32(rootEntry) & 0xfffff000) >>> 0);
      ctxEntry = hex(ctp + (sid & 0xff) * 16);
    }
    const ctx = o.te && o.ttm === 0 ? walkContext(mem, o.u, o.rootTable, sid) : [];
    const tag = ctx.length === 1 && ctx[0]!.ok ? ctx[0]!.did : 0;
    return { snapshot: `${o.te}|${o.ttm}|${o.rootTable}|${hex(rootEntry)}|${ctxEntry}`, tag };
  }

  /** A notifier now listens on `sid` (its record starts from the tables as they are). */
  listen(sid: number): void {
    if (!this.spaces.has(sid)) this.spaces.set(sid, this.view(sid));
  }

  /**
   * After a step's invalidations: compare each assignment's shadow with the reference.
   *
   * The unit syncs at each invalidation, with the tables as they are then; a wait descriptor
   * later in the same batch may write RAM (its status write) after that sync, and nothing
   * re-syncs for it until the next invalidation (a stale shadow, as with real VFIO when the
   * guest does not invalidate). So each invalidation is judged against RAM as it was when the
   * unit processed it: status writes after it are undone for its reference walk, and each range
   * is compared with the reference of the last invalidation covering it.
   */
  afterEvents(events: readonly Inval[], assignments: readonly VfioAssignment[], writes: readonly StatusWrite[] = []): Problem[] {
    const problems: Problem[] = [];
    const limitedNow = this.walkLimitedThisStep;
    this.walkLimitedThisStep = new Set();
    if (events.length === 0) return problems;
    const mem = this.o.mem;
    // Status writes applied to the oracle's copy (all of them, as the step left RAM).
    let applied = writes.length;
    /** RAM as it was just after event `j` (writes with `after` <= j applied), or as the step left it. */
    const at = (j: number) => {
      let n = 0;
      while (n < writes.length && writes[n]!.after <= j) n++;
      while (applied > n) {
        const w = writes[--applied]!;
        mem.setU32(w.address, w.old);
      }
      while (applied < n) {
        const w = writes[applied++]!;
        mem.setU32(w.address, w.data);
      }
    };
    const final = events.length;
    // Writes after an invalidation of the step: then RAM differs between its invalidations.
    const late = writes.some((w) => w.after > 0);
    try {
      for (const [sid, space] of this.spaces) {
        const scopes: Scope[] = [];
        const width = 2 ** this.o.u.mgaw;
        for (let j = 0; j < events.length; j++) {
          const e = events[j]!;
          if (late) at(j);
          const full = () => scopes.push({ start: 0, end: width, time: j });
          const resync = () => {
            Object.assign(space, this.view(sid), { ambiguous: false });
            // The unit mirrors the space again from a context sync unless that sync too was cut.
            if (!limitedNow.has(sid)) this.walkLimited.delete(sid);
            full();
          };
          const maybe = (required: boolean) => {
            if (required && !space.ambiguous) resync();
            else if (this.view(sid).snapshot !== space.snapshot) space.ambiguous = true;
          };
          switch (e.k) {
            case "all":
            case "ctx-global":
              resync();
              break;
            case "ctx-domain":
              maybe(e.did === space.tag);
              break;
            case "ctx-device": {
              const mask = ~[0, 4, 6, 7][e.fm]! & 0xffff;
              if ((sid & mask) === (e.sid & mask)) maybe(e.did === space.tag);
              break;
            }
            case "tlb-global":
              full();
              break;
            case "tlb-domain":
              if (e.did === space.tag) full();
              break;
            case "tlb-page":
              if (e.did === space.tag) scopes.push({ start: Math.min(e.start, width), end: Math.min(e.end, width), time: j });
              break;
          }
        }
        if (late) at(final);
        if (scopes.length === 0) continue;
        if (space.ambiguous || this.view(sid).snapshot !== space.snapshot) continue; // context changed without a context-level sync
        if (this.walkLimited.has(sid)) continue;
        // Without late writes every invalidation saw the same RAM: one comparison per range.
        const judged = late ? lastCovering(scopes) : scopes.some((x) => x.start === 0 && x.end === width) ? [{ start: 0, end: width, time: final }] : scopes;
        for (const vfio of assignments) {
          if (vfio.sid !== sid) continue;
          for (const { start, end, time } of judged) {
            if (start >= end) continue;
            if (late) at(time);
            const expected = this.reference(sid, start, end);
            if (late) at(final);
            if (expected === undefined) continue;
            this.checks++;
            const got = normalise(
              vfio.hostIommu.mappings().map((m) => ({ iova: m.iova, end: m.iova + m.size, out: m.hostAddress, perm: m.permission })),
              start,
              end,
            );
            const diffs = expected.map((x) => firstDifference(x, got));
            const diff = diffs.every((d) => d !== undefined) ? diffs[0] : undefined;
            if (diff) {
              const why = events.map((x) => x.k + ("did" in x ? ` did ${x.did}` : "") + (x.k === "tlb-page" ? ` [0x${x.start.toString(16)}, 0x${x.end.toString(16)})` : "")).join(", ");
              const when = late && time < final - 1 ? ` (RAM as at invalidation ${time + 1} of ${final}, before a later wait descriptor's status write)` : "";
              problems.push({ check: "shadow", message: `VFIO shadow of sid 0x${sid.toString(16)} after ${why}, in [0x${start.toString(16)}, 0x${end.toString(16)})${when}: ${diff}` });
              return problems;
            }
          }
        }
      }
    } finally {
      at(final);
    }
    return problems;
  }

  /**
   * The reference walk's mappings of `sid` in [start, end) (alternatives, any of which may hold),
   * or undefined when it cannot say. An identity space (TE off, pass-through) may or may not leave
   * out the interrupt range: it is never memory, and the README documents one identity MAP.
   */
  private reference(sid: number, start: number, end: number): Run[][] | undefined {
    const o = this.o;
    const identity = (size: number): Run[][] => {
      const whole = [{ iova: 0, end: size, out: 0, perm: 3 }];
      return [normalise(whole, start, end), normalise(withoutInterruptRange(whole), start, end)];
    };
    if (!o.te) return identity(2 ** o.u.mgaw);
    if (o.ttm !== 0) return [[]];
    const ctx = walkContext(o.mem, o.u, o.rootTable, sid);
    if (ctx.length !== 1) return undefined;
    const c = ctx[0]!;
    if (!c.ok) return [[]];
    if (c.tt === 2) return identity(2 ** o.u.haw);
    const limit = 2 ** Math.min(o.u.mgaw, 30 + 9 * c.aw);
    const leaves = enumerate(o.mem, o.u, c.root, c.aw, start, Math.min(end, limit), REFERENCE_LIMIT);
    return leaves && [normalise(withoutInterruptRange(leaves), start, end)];
  }
}

/** A range some invalidation of the step covered, and the index of that invalidation. */
interface Scope {
  start: number;
  end: number;
  time: number;
}

/** Each scope minus what later scopes cover: every address judged by the last invalidation that covered it. */
function lastCovering(scopes: readonly Scope[]): Scope[] {
  const out: Scope[] = [];
  for (let k = 0; k < scopes.length; k++) {
    let pieces: [number, number][] = [[scopes[k]!.start, scopes[k]!.end]];
    for (let l = k + 1; l < scopes.length && pieces.length > 0; l++) {
      const { start, end } = scopes[l]!;
      const next: [number, number][] = [];
      for (const [s, e] of pieces) {
        if (end <= s || start >= e) next.push([s, e]);
        else {
          if (s < start) next.push([s, start]);
          if (end < e) next.push([end, e]);
        }
      }
      pieces = next;
    }
    for (const [start, end] of pieces) out.push({ start, end, time: scopes[k]!.time });
  }
  return out;
}

function show(r: Run | undefined): string {
  return r ? `[0x${r.iova.toString(16)}, 0x${r.end.toString(16)}) → 0x${r.out.toString(16)} perm ${r.perm}` : "nothing";
}

function firstDifference(expected: Run[], got: Run[]): string | undefined {
  for (let i = 0; i < Math.max(expected.length, got.length); i++) {
    const a = expected[i], b = got[i];
    if (!a || !b || a.iova !== b.iova || a.end !== b.end || a.out !== b.out || a.perm !== b.perm) {
      return `reference has ${show(a)}, shadow has ${show(b)} (${expected.length} vs ${got.length} runs)`;
    }
  }
  return undefined;
}
