/**
 * Counting young-generation collections (scavenges) while a path runs: how the allocation tests
 * show a hot path allocates nothing (test/hot-path-allocation.test.ts says why a collection count
 * is the measure and a heap-growth check is not).
 */
import { constants, PerformanceObserver } from "node:perf_hooks";

/** Scavenges while `run(n)` runs, after a warm-up of `run(n / 10)`. */
export async function scavengesDuring(run: (n: number) => void, n: number): Promise<number> {
  run(n / 10);
  let scavenges = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
  });
  // Entries of collections before this point are not counted: let them arrive first.
  await new Promise((resolve) => setTimeout(resolve, 10));
  observer.observe({ entryTypes: ["gc"] });
  run(n);
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  return scavenges;
}
