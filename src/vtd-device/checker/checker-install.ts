/**
 * Puts the strict checker in front of the unit: each DMA request is inspected before the
 * translator uses its caches, each interrupt request before the interrupt entry cache is used,
 * and the trace feeds the warnings. In scalable mode every request (with or without a PASID)
 * reaches the scalable translation's `translate`, which is wrapped the same way. Installed on the
 * unit's own instances only (own `translate` and `request` properties), so a unit without the
 * checker runs the code unchanged.
 */
import type { InterruptRemapping } from "../interrupts/interrupt-remapping.ts";
import type { Tracer } from "../trace.ts";
import type { Translator } from "../translation/translator.ts";
import { DriverChecker, type CheckedUnit } from "./checker.ts";
import type { ResolvedCheckerOptions } from "./checker-options.ts";

export function installChecker(settings: ResolvedCheckerOptions, unit: CheckedUnit, translator: Translator, interrupts: InterruptRemapping, trace: Tracer): DriverChecker {
  const checker = new DriverChecker(unit, settings);
  const translate = translator.translate;
  translator.translate = (sid: number, address: number, write: boolean): number => {
    // Legacy mode only: with TTM = 01 latched the scalable translation below is inspected instead.
    if (translator.enabled && translator.rootTableModeValid) checker.inspect(sid, address, write, translator.rootTable);
    const reason = translate.call(translator, sid, address, write);
    checker.diagnostics.sample();
    return reason;
  };
  const scalable = translator.scalable;
  if (scalable) {
    checker.scalable = scalable;
    const translateScalable = scalable.translate;
    scalable.translate = (into, rootTable, sid, address, write) => {
      if (scalable.active) checker.inspectScalable(scalable, sid, address, write, rootTable);
      const reason = translateScalable.call(scalable, into, rootTable, sid, address, write);
      checker.diagnostics.sample();
      return reason;
    };
  }
  trace.subscribe((event) => checker.diagnostics.event(event));
  const request = interrupts.request;
  interrupts.request = (sid: number, address: bigint | number, data: number): boolean => {
    checker.inspectInterrupt(sid, address, data, interrupts);
    return request.call(interrupts, sid, address, data);
  };
  return checker;
}
