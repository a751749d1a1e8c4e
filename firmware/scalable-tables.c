#include "scalable-tables.h"

#include "console.h"
#include "tables.h"
#include "vtd.h"

#define POOL_PAGES 20
#define FIRST_STAGE_LEVELS 4 /* FSPM 00: 4-level paging */
#define ADDRESS_MASK 0x000FFFFFFFFFF000ull

struct sm_counts sm_counts;

static u64 root_table[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 context_table[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 pasid_directory[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 pasid_table[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 pool[POOL_PAGES][VTD_ENTRIES_PER_TABLE] __attribute__((aligned(4096)));
static u32 pool_used;
static struct pci_function dev;
static bool pasid_entry_present;
static u32 pasid_entry_pgtt;

static volatile u64 *context_entry(void) {
  u32 devfn = (u32)dev.dev << 3 | dev.fn;
  return &context_table[(devfn % VTD_SM_DEVFN_UPPER) * (VTD_SM_CONTEXT_ENTRY_SIZE / 8)];
}

/* Scalable-mode structures are ordered by bit 0 (P); the guest makes no write-only second-stage leaf. */
static void qword_write(volatile u64 *e, u64 value) {
  table_entry_write(e, value, 1);
}

/* After a not-present structure became present: an invalidation under CM, else the write buffer. */
static bool after_present(bool invalidation_done_under_cm) {
  if (unit.caching_mode) return invalidation_done_under_cm;
  return vtd_flush_write_buffer_if_required();
}

void smt_init(struct pci_function device) {
  dev = device;
  pool_used = 0;
  pasid_entry_present = false;
  memset(root_table, 0, sizeof(root_table));
  memset(context_table, 0, sizeof(context_table));
  memset(pasid_directory, 0, sizeof(pasid_directory));
  memset(pasid_table, 0, sizeof(pasid_table));
  vtd_flush_table(root_table, sizeof(root_table));
  vtd_flush_table(context_table, sizeof(context_table));
  vtd_flush_table(pasid_directory, sizeof(pasid_directory));
  vtd_flush_table(pasid_table, sizeof(pasid_table));
  /* Root entry of the bus: lower half for devfn 0-127, upper half for 128-255. */
  u32 half = ((u32)device.dev << 3 | device.fn) >= VTD_SM_DEVFN_UPPER;
  qword_write(&root_table[2 * device.bus + half], ((u64)(u32)context_table & VTD_SM_ROOT_HALF_CTP) | FIELD_PREP(VTD_SM_ROOT_HALF_P, 1));
}

u32 smt_root(void) {
  return (u32)root_table;
}

bool smt_context_install(void) {
  volatile u64 *e = context_entry();
  e[1] = FIELD_PREP(VTD_SM_CONTEXT_HI_RID_PASID, SM_RID_PASID);
  vtd_flush_table(&e[1], 8);
  qword_write(&e[0], ((u64)(u32)pasid_directory & VTD_SM_CONTEXT_LO_PASIDDIRPTR) | FIELD_PREP(VTD_SM_CONTEXT_LO_PDTS, 0) |
                         FIELD_PREP(VTD_SM_CONTEXT_LO_P, 1));
  /* CM = 1 may hold the not-present entry: device-selective context-cache invalidation (DID 0). */
  return after_present(unit.caching_mode && vtd_invalidate_context_device(pci_sid(dev), 0));
}

bool smt_directory_install(void) {
  qword_write(&pasid_directory[SM_RID_PASID >> VTD_PASID_TABLE_INDEX_BITS],
              ((u64)(u32)pasid_table & VTD_PASID_DIRECTORY_ENTRY_PTBLPTR) | FIELD_PREP(VTD_PASID_DIRECTORY_ENTRY_P, 1));
  return after_present(unit.caching_mode && smt_invalidate_pasid_cache());
}

bool smt_pasid_entry(bool present, u32 pgtt, u32 table_root, bool invalidate) {
  return smt_pasid_entry_with(present, pgtt, table_root, invalidate, 0);
}

bool smt_pasid_entry_with(bool present, u32 pgtt, u32 table_root, bool invalidate, u64 q0_bits) {
  volatile u64 *e = &pasid_table[(SM_RID_PASID % (1u << VTD_PASID_TABLE_INDEX_BITS)) * (VTD_PASID_ENTRY_SIZE / 8)];
  bool first = pgtt == SM_FIRST_STAGE;
  u64 q0 = FIELD_PREP(VTD_PASID_ENTRY_Q0_P, present) | FIELD_PREP(VTD_PASID_ENTRY_Q0_AW, unit.aw) |
           FIELD_PREP(VTD_PASID_ENTRY_Q0_PGTT, pgtt) | (first ? 0 : ((u64)table_root & VTD_PASID_ENTRY_Q0_SSPTPTR)) | q0_bits;
  if (!present) qword_write(&e[0], q0); /* P goes first */
  e[1] = FIELD_PREP(VTD_PASID_ENTRY_Q1_DID, SM_DOMAIN_ID);
  e[2] = first ? ((u64)table_root & VTD_PASID_ENTRY_Q2_FSPTPTR) | FIELD_PREP(VTD_PASID_ENTRY_Q2_FSPM, 0) : 0;
  vtd_flush_table(&e[1], 16);
  if (present) qword_write(&e[0], q0); /* P goes last */
  bool was_present = pasid_entry_present;
  u32 old_pgtt = pasid_entry_pgtt;
  pasid_entry_present = present;
  pasid_entry_pgtt = pgtt;
  if (!invalidate) return true;
  /* A present entry changed: PASID cache, then the translations it gave (VT-d §6.5.2.2, §6.2.2). */
  if (was_present)
    return smt_invalidate_pasid_cache() &&
           smt_invalidate_stage(old_pgtt == SM_FIRST_STAGE ? SM_FIRST_STAGE : SM_SECOND_STAGE);
  return present ? after_present(unit.caching_mode && smt_invalidate_pasid_cache()) : true;
}

/* ---- page-table trees: second-stage (R/W, 3 or 4 levels) or first-stage (P/RW/US, 4 levels) ---- */

static u32 levels(enum sm_stage stage) {
  return stage == SM_FIRST_STAGE ? FIRST_STAGE_LEVELS : unit.levels;
}

/* What a non-leaf entry allows (everything: the leaf decides). */
static u64 table_flags(enum sm_stage stage) {
  return stage == SM_FIRST_STAGE ? VTD_FIRST_STAGE_PTE_P | VTD_FIRST_STAGE_PTE_RW | VTD_FIRST_STAGE_PTE_US
                                 : VTD_PTE_R | VTD_PTE_W;
}

static u64 leaf_flags(enum sm_stage stage, bool writable) {
  if (stage == SM_FIRST_STAGE)
    return VTD_FIRST_STAGE_PTE_P | VTD_FIRST_STAGE_PTE_US | (writable ? VTD_FIRST_STAGE_PTE_RW : 0);
  return VTD_PTE_R | (writable ? VTD_PTE_W : 0);
}

u32 smt_tree(void) {
  if (pool_used == POOL_PAGES) return 0;
  u64 *t = pool[pool_used++];
  memset(t, 0, VTD_PAGE_SIZE);
  vtd_flush_table(t, VTD_PAGE_SIZE);
  return (u32)t;
}

static u32 index_at(u64 iova, u32 level) {
  return (u32)(iova >> (VTD_PAGE_SHIFT + VTD_LEVEL_STRIDE * (level - 1))) & (VTD_ENTRIES_PER_TABLE - 1);
}

/* The leaf entry of iova, creating tables on the way when `create` (NULL when out of pages or absent). */
static volatile u64 *walk(enum sm_stage stage, u32 tree, u64 iova, bool create) {
  u64 *table = (u64 *)tree;
  for (u32 level = levels(stage); level > 1; level--) {
    volatile u64 *e = &table[index_at(iova, level)];
    if (!(*e & 1)) { /* R (second stage) or P (first stage) */
      if (!create) return 0;
      u32 next = smt_tree();
      if (!next) return 0;
      qword_write(e, ((u64)next & ADDRESS_MASK) | table_flags(stage));
    }
    table = (u64 *)(u32)(*e & ADDRESS_MASK);
  }
  return &table[index_at(iova, 1)];
}

bool smt_map(enum sm_stage stage, u32 tree, u64 iova, u32 physical, bool writable) {
  volatile u64 *e = walk(stage, tree, iova, true);
  if (!e) {
    result_fail("sm.tables.map", "out of page-table pages");
    return false;
  }
  qword_write(e, ((u64)physical & ADDRESS_MASK) | leaf_flags(stage, writable));
  /* Not present -> present: CM = 1 asks for a page invalidation in the second stage only. */
  if (stage == SM_SECOND_STAGE && unit.caching_mode) return smt_invalidate_page(stage, iova);
  return vtd_flush_write_buffer_if_required();
}

volatile u64 *smt_leaf(enum sm_stage stage, u32 tree, u64 iova) {
  return walk(stage, tree, iova, false);
}

void smt_remap_leaf(enum sm_stage stage, u32 tree, u64 iova, u32 physical) {
  volatile u64 *e = smt_leaf(stage, tree, iova);
  if (e) qword_write(e, (*e & ~ADDRESS_MASK) | ((u64)physical & ADDRESS_MASK));
}

void smt_leaf_set_bits(enum sm_stage stage, u32 tree, u64 iova, u64 bits) {
  volatile u64 *e = smt_leaf(stage, tree, iova);
  if (e) qword_write(e, *e | bits);
}

/* ---- invalidation ---- */

bool smt_invalidate_pasid_cache(void) {
  sm_counts.pasid_cache++;
  u64 d[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_SCALABLE_DESCRIPTOR_TYPE_PASID_CACHE) |
                  FIELD_PREP(VTD_PASID_CACHE_DESC_G, VTD_PASID_CACHE_GRANULARITY_PASID) |
                  FIELD_PREP(VTD_PASID_CACHE_DESC_DID, SM_DOMAIN_ID) | FIELD_PREP(VTD_PASID_CACHE_DESC_PASID, SM_RID_PASID),
              0};
  return vtd_qi_submit(d, 1);
}

static bool pasid_iotlb(u32 granularity, u64 iova) {
  sm_counts.pasid_iotlb++;
  u64 d[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_SCALABLE_DESCRIPTOR_TYPE_PASID_IOTLB) |
                  FIELD_PREP(VTD_PASID_IOTLB_DESC_G, granularity) | FIELD_PREP(VTD_PASID_IOTLB_DESC_DID, SM_DOMAIN_ID) |
                  FIELD_PREP(VTD_PASID_IOTLB_DESC_PASID, SM_RID_PASID),
              granularity == VTD_PASID_IOTLB_GRANULARITY_PAGE
                  ? (iova & VTD_PASID_IOTLB_DESC_ADDR) | FIELD_PREP(VTD_PASID_IOTLB_DESC_IH, 0) | FIELD_PREP(VTD_PASID_IOTLB_DESC_AM, 0)
                  : 0};
  return vtd_qi_submit(d, 1);
}

bool smt_invalidate_pasid_iotlb_page(u64 iova) {
  return pasid_iotlb(VTD_PASID_IOTLB_GRANULARITY_PAGE, iova);
}

bool smt_invalidate_pasid_iotlb_all(void) {
  return pasid_iotlb(VTD_PASID_IOTLB_GRANULARITY_PASID, 0);
}

bool smt_invalidate_page(enum sm_stage stage, u64 iova) {
  return stage == SM_FIRST_STAGE ? smt_invalidate_pasid_iotlb_page(iova) : vtd_invalidate_iotlb_pages(SM_DOMAIN_ID, iova, 0);
}

bool smt_invalidate_stage(enum sm_stage stage) {
  return stage == SM_FIRST_STAGE ? smt_invalidate_pasid_iotlb_all() : vtd_invalidate_iotlb_domain(SM_DOMAIN_ID);
}
