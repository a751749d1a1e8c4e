/**
 * What an address space translates with, read the way the unit would load it now (a pure walk:
 * no fault recorded, no cache used): TE off is identity, a legacy context entry gives its
 * second-stage table or pass-through, and in scalable mode the PASID-table entry decides
 * (scalable-spaces.ts). The notifiers call this at every context (or PASID-cache) sync.
 */
import { TranslationType } from "../../spec/entries.ts";
import { NO_PASID } from "../../spec/scalable.ts";
import type { MemoryAccess } from "../memory/memory-access.ts";
import type { WalkConfig } from "../registers/capabilities.ts";
import { ContextWalk, walkContext } from "../translation/walk.ts";
import { SpaceMode, type IommuAddressSpace } from "./address-space.ts";
import type { ScalableSpaces } from "./scalable-spaces.ts";

/** What `translationRoot` returns: the latched root table, or TE off (identity), or every request blocked. */
export const ROOT_TRANSLATION_OFF = -1;
export const ROOT_BLOCKED = -2;

export class ContextReader {
  /** Scalable mode, when the unit offers it: read while TTM = 01 is latched. */
  scalable: ScalableSpaces | undefined = undefined;
  private readonly contextWalk = new ContextWalk();

  constructor(
    private readonly memory: MemoryAccess,
    private readonly cfg: WalkConfig,
    /** The latched legacy root table while translation is enabled; ROOT_TRANSLATION_OFF or ROOT_BLOCKED. */
    private readonly translationRoot: () => number,
  ) {}

  read(space: IommuAddressSpace): void {
    const root = this.translationRoot();
    const awBits = this.cfg.awBits;
    const fullWidth = 2 ** awBits;
    space.firstStage = undefined;
    space.entryPasid = -1;
    if (root === ROOT_BLOCKED && this.scalable?.active) return this.scalable.read(space, awBits);
    space.did = 0;
    space.tableRoot = 0;
    space.levels = 0;
    // The unit faults on the interrupt range where it translates (TE on), not with TE off.
    space.interruptRangeBlocked = root >= 0;
    if (root === ROOT_BLOCKED || (root >= 0 && space.pasid !== NO_PASID)) {
      // The unit faults every request (an unsupported RTADDR.TTM), or legacy mode meets a request with a PASID: nothing is mapped.
      space.mode = SpaceMode.None;
      space.inputLimit = 0;
      return;
    }
    if (root < 0) {
      space.mode = SpaceMode.Identity;
      space.inputLimit = fullWidth;
      return;
    }
    const walk = walkContext(this.memory, root, space.sid, this.cfg, this.contextWalk);
    if (walk.reason !== 0) {
      space.mode = SpaceMode.None;
      space.inputLimit = 0;
      return;
    }
    space.did = walk.did;
    if (walk.translationType === TranslationType.PassThrough) {
      space.mode = SpaceMode.Identity;
      space.inputLimit = fullWidth;
      return;
    }
    space.mode = SpaceMode.Translated;
    space.tableRoot = walk.tableRoot;
    space.levels = walk.aw + 2;
    space.inputLimit = 2 ** Math.min(awBits, 30 + 9 * walk.aw);
  }
}
