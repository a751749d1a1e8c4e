/*
 * The test guest's scalable-mode section (VT-d 5.10 §3.4.3, §3.6-§3.8, §6.5.2, §9.2-§9.7), run
 * instead of the legacy translation checks when the command line says `scalable` and the unit
 * offers it (ECAP.SMTS): RTADDR with TTM = 01 over scalable-mode root and context entries, a
 * PASID directory and table; edu's DMA (requests without PASID: RID_PASID) through a second-stage
 * and a first-stage PASID-table entry, as the unit offers each stage, then pass-through (ECAP.PT),
 * switching the entry's PGTT with its invalidations; PASID-cache and IOTLB /
 * PASID-based IOTLB invalidation observed (the cached translation before, the new one after);
 * one fault of each kind the guest can provoke, with the fault record's fields.
 *
 * Known QEMU 10.0 departures (docs/conformance.md S1-S3) are printed as PLATFORM lines, which the
 * transcript comparison leaves out: the fault reason where QEMU reports another one (or, not
 * checking a reserved bit, faults later in the walk), FRCD.PP/PV,
 * the first-stage leaf's Dirty flag after a write. So is whether a changed PASID-table entry is
 * still used before the PASID-cache invalidation: a unit may cache it or not (QEMU 10.0 does not).
 */
#ifndef SCALABLE_H
#define SCALABLE_H

#include "edu.h"

/* True when the unit offers scalable mode (ECAP.SMTS); says why not otherwise. */
bool sm_offered(void);
/* Runs the section; needs the 256-bit queue on (unit.queue_wide) and the fault event set up. */
void sm_run(const struct edu *edu, u8 fault_vector);

#endif
