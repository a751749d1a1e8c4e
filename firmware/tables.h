/*
 * Translation tables for one domain: root table, context tables, second-stage page tables.
 * Each update is followed by what the unit's capabilities ask for (Linux's rules):
 *   ECAP.C = 0   clflush over every table write;
 *   CAP.CM = 1   not-present -> present needs an invalidation: a context entry gets a
 *                device-selective context-cache invalidation with DID 0 and a domain-selective
 *                IOTLB invalidation; a new mapping gets a page-selective IOTLB invalidation;
 *   CAP.CM = 0   a write-buffer flush instead, when CAP.RWBF asks for one.
 * Removing a mapping always needs a page-selective IOTLB invalidation.
 */
#ifndef TABLES_H
#define TABLES_H

#include "pci.h"

#define DOMAIN_ID 1

enum page_size { PAGE_4K = 1, PAGE_2M = 2 }; /* the leaf's level */
enum access { ACCESS_READ = 1, ACCESS_WRITE = 2, ACCESS_READ_WRITE = 3 };

/* Zeroed root table with a present root entry (empty context table) for the device's bus. */
void tables_init(struct pci_function device);
u32 tables_root(void);
/*
 * Makes the device's context entry present (TT = untranslated, DOMAIN_ID, the page tables).
 * With skip_invalidation the CM = 1 invalidation is left out (and counted as skipped);
 * context_invalidate_after_install() issues it later.
 */
bool context_install(struct pci_function device, bool skip_invalidation);
bool context_invalidate_after_install(struct pci_function device);
/* Writes a 64-bit table entry in the order that never shows a half-made present one, then flushes it. */
void table_entry_write(volatile u64 *e, u64 value, u64 present);
bool map_page(u64 iova, u32 physical, enum page_size size, enum access access);
/*
 * Clears the entry mapping `iova` and invalidates its IOTLB pages. With skip_flush (option
 * skip-cache-flush) the store's cache line is not flushed though ECAP.C = 0 (counted as skipped);
 * flush_page_entry() flushes it later.
 */
bool unmap_page(u64 iova, enum page_size size, bool skip_flush);
bool flush_page_entry(u64 iova, enum page_size size);

#endif
