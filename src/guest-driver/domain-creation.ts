/**
 * A new domain's DID, address width and empty tables. Second stage (legacy mode, or scalable mode
 * with stage "second"): 39- or 48-bit tables as SAGAW offers, leaves as CAP.SLLPS allows. First
 * stage: IA-32e 4-level tables; input addresses below 2^47 (the lower canonical half, as Linux
 * 6.1 limits a first-level domain's aperture), 2 MiB leaves always, 1 GiB with CAP.FS1GP.
 */
import { awLevels, awWidth, PAGE_SIZE } from "../spec/entries.ts";
import { widestAw, type UnitCapabilities } from "./discovery.ts";
import { Domain, type DomainStage } from "./domain.ts";
import { DomainPageTables, FIRST_STAGE, SECOND_STAGE } from "./domain-page-tables.ts";
import { hex, VtdDriverError } from "./errors.ts";
import { IovaAllocator } from "./iova-allocator.ts";
import type { TableMemory } from "./table-memory.ts";

/** 4-level first-stage paging: AW 2 (48-bit) and the canonical lower half. */
const FIRST_STAGE_AW = 2;
const FIRST_STAGE_INPUT_BITS = 47;

export function newDomain(caps: UnitCapabilities, tables: TableMemory, domains: ReadonlyMap<number, Domain>, stage: DomainStage, wanted: number | undefined): Domain {
  let aw: number;
  if (wanted === 39) aw = 1;
  else if (wanted === 48) aw = 2;
  else if (wanted !== undefined) throw new VtdDriverError("bad-argument", `addressWidth ${String(wanted)}: expected 39 or 48`);
  else aw = stage === "first" ? FIRST_STAGE_AW : widestAw(caps);
  if (stage === "first") {
    if (aw !== FIRST_STAGE_AW) throw new VtdDriverError("unsupported", `a ${awWidth(aw)}-bit first-stage domain: first-stage paging is 4-level (48-bit)`);
  } else if (((caps.sagaw >> aw) & 1) === 0) {
    throw new VtdDriverError("unsupported", `a ${awWidth(aw)}-bit domain: the unit's SAGAW (${hex(caps.sagaw)}) does not offer it`);
  }
  const maxDid = 2 ** caps.domainIdBits - 1;
  let did = 1; // DID 0 is reserved (caching mode tags not-present entries with it)
  while (domains.has(did) && did <= maxDid) did++;
  if (did > maxDid) throw new VtdDriverError("out-of-space", `all ${maxDid} domain ids are in use`);
  const width = Math.min(stage === "first" ? FIRST_STAGE_INPUT_BITS : awWidth(aw), caps.mgawBits);
  const largestLeaf = stage === "first"
    ? (caps.firstStage1G ? 3 : 2)
    : caps.superpage1G && caps.superpage2M ? 3 : caps.superpage2M ? 2 : 1;
  const pageTables = new DomainPageTables(tables, awLevels(aw), largestLeaf, stage === "first" ? FIRST_STAGE : SECOND_STAGE);
  return new Domain(did, aw, width, pageTables, new IovaAllocator(PAGE_SIZE, 2 ** width), stage);
}
