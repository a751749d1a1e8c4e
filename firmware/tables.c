#include "tables.h"

#include "console.h"
#include "vtd.h"

#define POOL_PAGES 16

static u64 root_table[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 context_table[VTD_PAGE_SIZE / 8] __attribute__((aligned(4096)));
static u64 pool[POOL_PAGES][VTD_ENTRIES_PER_TABLE] __attribute__((aligned(4096)));
static u32 pool_used;
static u64 *page_table_root;

static u64 *table_alloc(void) {
  if (pool_used == POOL_PAGES) return 0;
  u64 *t = pool[pool_used++];
  memset(t, 0, VTD_PAGE_SIZE);
  vtd_flush_table(t, VTD_PAGE_SIZE);
  return t;
}

/*
 * A 64-bit entry is written as two dwords. Making it present (any of `present` set in the new
 * value) writes the high dword first; clearing it writes the low dword first, so the unit never
 * sees a half-made present entry. table_entry_write also flushes its line (ECAP.C = 0).
 */
static void entry_store(volatile u64 *e, u64 value, u64 present) {
  volatile u32 *half = (volatile u32 *)e;
  if (value & present) {
    half[1] = (u32)(value >> 32);
    barrier();
    half[0] = (u32)value;
  } else {
    half[0] = (u32)value;
    barrier();
    half[1] = (u32)(value >> 32);
  }
}

void table_entry_write(volatile u64 *e, u64 value, u64 present) {
  entry_store(e, value, present);
  vtd_flush_table(e, 8);
}

/* Root and context entries (P, bit 0) and second-stage paging entries (R/W, bits 1:0). */
static void entry_write(volatile u64 *e, u64 value) {
  table_entry_write(e, value, 3);
}

void tables_init(struct pci_function device) {
  memset(root_table, 0, sizeof(root_table));
  memset(context_table, 0, sizeof(context_table));
  vtd_flush_table(root_table, sizeof(root_table));
  vtd_flush_table(context_table, sizeof(context_table));
  page_table_root = table_alloc();
  /* Root entry: 128 bits, low qword at 2·bus; the high qword is reserved (0). */
  entry_write(&root_table[2 * device.bus], ((u64)(u32)context_table & VTD_ROOT_LO_CTP) | FIELD_PREP(VTD_ROOT_LO_P, 1));
}

u32 tables_root(void) {
  return (u32)root_table;
}

bool context_install(struct pci_function device, bool skip_invalidation) {
  u32 devfn = (u32)device.dev << 3 | device.fn;
  volatile u64 *entry = &context_table[2 * devfn];
  entry[1] = FIELD_PREP(VTD_CONTEXT_HI_AW, unit.aw) | FIELD_PREP(VTD_CONTEXT_HI_DID, DOMAIN_ID);
  vtd_flush_table(&entry[1], 8);
  entry_write(&entry[0], ((u64)(u32)page_table_root & VTD_CONTEXT_LO_SLPTPTR) |
                           FIELD_PREP(VTD_CONTEXT_LO_TT, VTD_TRANSLATION_TYPE_UNTRANSLATED) | FIELD_PREP(VTD_CONTEXT_LO_P, 1));
  if (!unit.caching_mode) return vtd_flush_write_buffer_if_required();
  if (skip_invalidation) {
    unit.counts.cm_skipped++;
    return true;
  }
  return context_invalidate_after_install(device);
}

bool context_invalidate_after_install(struct pci_function device) {
  /* CM = 1 may cache the not-present entry, tagged with domain 0. */
  return vtd_invalidate_context_device(pci_sid(device), 0) && vtd_invalidate_iotlb_domain(DOMAIN_ID);
}

static u32 level_shift(u32 level) {
  return VTD_PAGE_SHIFT + VTD_LEVEL_STRIDE * (level - 1);
}

/* The entry for iova at the given level, creating intermediate tables (or NULL if out of pages). */
static volatile u64 *walk(u64 iova, u32 leaf_level) {
  u64 *table = page_table_root;
  for (u32 level = unit.levels; level > leaf_level; level--) {
    volatile u64 *e = &table[(iova >> level_shift(level)) & (VTD_ENTRIES_PER_TABLE - 1)];
    if (!(*e & (VTD_PTE_R | VTD_PTE_W))) {
      u64 *next = table_alloc();
      if (!next) return 0;
      entry_write(e, ((u64)(u32)next & VTD_PTE_ADDR) | VTD_PTE_R | VTD_PTE_W);
    }
    table = (u64 *)(u32)(*e & VTD_PTE_ADDR);
  }
  return &table[(iova >> level_shift(leaf_level)) & (VTD_ENTRIES_PER_TABLE - 1)];
}

bool map_page(u64 iova, u32 physical, enum page_size size, enum access access) {
  volatile u64 *e = walk(iova, size);
  if (!e) {
    result_fail("tables.map", "out of page-table pages");
    return false;
  }
  u64 value = ((u64)physical & VTD_PTE_ADDR) | ((access & ACCESS_READ) ? VTD_PTE_R : 0) |
              ((access & ACCESS_WRITE) ? VTD_PTE_W : 0) | (size == PAGE_2M ? VTD_PTE_PS : 0);
  entry_write(e, value);
  if (unit.caching_mode) return vtd_invalidate_iotlb_pages(DOMAIN_ID, iova, VTD_LEVEL_STRIDE * (size - 1));
  return vtd_flush_write_buffer_if_required();
}

bool unmap_page(u64 iova, enum page_size size, bool skip_flush) {
  volatile u64 *e = walk(iova, size);
  if (!e) return false;
  if (skip_flush) {
    entry_store(e, 0, 3);
    unit.counts.flushes_skipped++;
  } else {
    entry_write(e, 0);
  }
  return vtd_invalidate_iotlb_pages(DOMAIN_ID, iova, VTD_LEVEL_STRIDE * (size - 1));
}

bool flush_page_entry(u64 iova, enum page_size size) {
  volatile u64 *e = walk(iova, size);
  if (!e) return false;
  vtd_flush_table(e, 8);
  return true;
}
