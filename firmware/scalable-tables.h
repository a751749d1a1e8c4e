/*
 * Scalable-mode tables for one device (VT-d 5.10 §9.2-§9.7): the scalable-mode root table, the
 * device's 256-bit context entry, a PASID directory (PDTS 0) and a PASID table, and page-table
 * trees in either stage's format. The device sends no PASID, so its requests use the context
 * entry's RID_PASID (0): one PASID-table entry serves them. Each update is followed by what the
 * unit's capabilities ask for, as tables.h says for legacy mode, with the per-stage CM rule: CM = 1
 * governs the PASID structures and second-stage mappings; first-stage mappings follow the CM = 0 rule.
 */
#ifndef SCALABLE_TABLES_H
#define SCALABLE_TABLES_H

#include "pci.h"

#define SM_DOMAIN_ID 3
#define SM_RID_PASID 0

/* What a page-table tree is for: the PASID-table entry's PGTT it serves. */
enum sm_stage {
  SM_FIRST_STAGE = 1,  /* VTD_PASID_GRANULAR_TRANSLATION_TYPE_FIRST_STAGE */
  SM_SECOND_STAGE = 2, /* ..._SECOND_STAGE */
};

struct sm_counts {
  u32 pasid_cache, pasid_iotlb;
};
extern struct sm_counts sm_counts;

/* Zeroed tables; the device's root-entry half points at its (empty) context table. */
void smt_init(struct pci_function device);
u32 smt_root(void);
/* The device's context entry becomes present (PDTS 0, the PASID directory, RID_PASID 0). */
bool smt_context_install(void);
/* PASID directory entry 0 becomes present (the PASID table). */
bool smt_directory_install(void);
/*
 * Writes RID_PASID's PASID-table entry: `pgtt` (VTD_PASID_GRANULAR_TRANSLATION_TYPE_*) over the
 * tree at `table_root` (0: none), DID SM_DOMAIN_ID; not present when !present. Invalidates the PASID
 * cache (and the stage's IOTLB entries) as the old entry and CM require, unless `invalidate` is false.
 */
bool smt_pasid_entry(bool present, u32 pgtt, u32 table_root, bool invalidate);
/* The same with `q0_bits` ORed into the entry's first qword (a reserved bit, to see it refused). */
bool smt_pasid_entry_with(bool present, u32 pgtt, u32 table_root, bool invalidate, u64 q0_bits);

/* A new, empty page-table tree (its top-level table, for either stage), or 0 when out of pages. */
u32 smt_tree(void);
/* Maps one 4 KiB page (read-only unless writable) in the tree; false when out of pages. */
bool smt_map(enum sm_stage stage, u32 tree, u64 iova, u32 physical, bool writable);
/* The leaf entry of iova in the tree (it must be mapped), to look at or to change. */
volatile u64 *smt_leaf(enum sm_stage stage, u32 tree, u64 iova);
/* Changes a mapped leaf's output page and does no invalidation (the caller observes, then invalidates). */
void smt_remap_leaf(enum sm_stage stage, u32 tree, u64 iova, u32 physical);
/* Sets `bits` in a mapped leaf (a reserved bit, to see it refused); no invalidation. */
void smt_leaf_set_bits(enum sm_stage stage, u32 tree, u64 iova, u64 bits);

/* Invalidations through the 256-bit queue. */
bool smt_invalidate_pasid_cache(void); /* PASID-selective: SM_DOMAIN_ID, RID_PASID */
bool smt_invalidate_pasid_iotlb_page(u64 iova);
bool smt_invalidate_pasid_iotlb_all(void); /* every entry of RID_PASID in SM_DOMAIN_ID */
/* The stage's IOTLB invalidation of one page: PASID-based for the first stage, the IOTLB descriptor for the second. */
bool smt_invalidate_page(enum sm_stage stage, u64 iova);
bool smt_invalidate_stage(enum sm_stage stage);

#endif
