/**
 * The interrupt range 0xFEE0_0000..0xFEEF_FFFF is never memory (VT-d §3.14): the unit faults a
 * translated DMA whose output falls there (0xE) and clips a larger mapping at its edge. A host
 * IOMMU shadow must do the same, or the assigned device writes where the emulated one cannot
 * (QEMU's VFIO never maps it either: guest RAM is not there).
 */
import { INTERRUPT_RANGE_BASE, INTERRUPT_RANGE_LIMIT } from "../spec/entries.ts";

const PAGE = 4096;

/** True when the output block [output, output + size) reaches into the interrupt range. */
export function reachesInterruptRange(output: number, size: number): boolean {
  return output <= INTERRUPT_RANGE_LIMIT && output + size > INTERRUPT_RANGE_BASE;
}

/**
 * The parts of the aligned block `iova` → `output` (`size` bytes, a power of two) outside the
 * interrupt range, as aligned power-of-two blocks (at each point the largest that fits), in
 * IOVA order: `visit(iova, size, output)` for each.
 */
export function blocksOutsideInterruptRange(iova: number, output: number, size: number, visit: (iova: number, size: number, output: number) => void): void {
  const end = output + size;
  const below = Math.min(end, INTERRUPT_RANGE_BASE), above = Math.max(output, INTERRUPT_RANGE_LIMIT + 1);
  if (output < below) alignedBlocks(output, below, iova - output, visit);
  if (above < end) alignedBlocks(above, end, iova - output, visit);
}

/** [start, end) of outputs (4 KiB aligned) as aligned blocks; an IOVA is its output + `shift`. */
function alignedBlocks(start: number, end: number, shift: number, visit: (iova: number, size: number, output: number) => void): void {
  for (let at = start; at < end; ) {
    let block = PAGE;
    while (at % (block * 2) === 0 && at + block * 2 <= end) block *= 2;
    visit(at + shift, block, at);
    at += block;
  }
}
