/*
 * The test guest's interrupt-remapping checks (VT-d ch. 5): the table set up as Linux does (QI on,
 * IRTA + SIRTP, a global interrupt-entry-cache invalidation, IRE, compatibility format blocked),
 * edu MSIs and the I/O APIC's RTC line remapped through IRTEs, the faults a guest can provoke,
 * and the IEC invalidation after an IRTE becomes present.
 */
#ifndef INTERRUPT_REMAPPING_H
#define INTERRUPT_REMAPPING_H
#include "acpi.h"
#include "edu.h"

struct ir_options {
  /* Skip, once, the IEC invalidation after a not-present IRTE that faulted becomes present. */
  bool skip_iec_invalidation;
  /* The vector the unit's fault event uses (compatibility format: never remapped). */
  u8 fault_vector;
};

/* Runs every check; needs queued invalidation on and the fault event set up. True when remapping was left enabled. */
bool ir_run(const struct dmar_unit *dmar_unit, const struct edu *edu, struct ir_options options);

#endif
