/*
 * The guest's VT-d driver: register access (64-bit registers as two 32-bit halves, low first),
 * the global command handshake, queued or register-based invalidation, fault records.
 * Every VT-d number comes from vtd-spec.h, generated from src/spec.
 */
#ifndef VTD_H
#define VTD_H

#include "arch.h"
#include "vtd-spec.h"

#define VTD_POLL_TIMEOUT_MS 1000

struct vtd_counts {
  u32 context_global, context_domain, context_device;
  u32 iotlb_global, iotlb_domain, iotlb_page;
  u32 waits, write_buffer_flushes, table_flushes, cache_lines_flushed, cm_skipped, flushes_skipped;
};

struct vtd {
  u32 base;
  u32 ver;
  u64 cap, ecap;
  /* decoded capabilities */
  bool caching_mode, rwbf, coherent, qi_supported, psi, esrtps, drain_read, drain_write;
  u32 sagaw, mgaw, sllps, mamv, fault_records, frcd_offset, iva_offset, iotlb_offset;
  /* chosen context AW value, its width in bits and number of levels */
  u32 aw, aw_width, levels;
  bool queued; /* invalidations go through the queue */
  bool queue_wide; /* IQA.DW = 1: 256-bit descriptors (scalable mode); set before vtd_qi_enable */
  struct vtd_counts counts;
};

extern struct vtd unit;

u32 vtd_read32(u32 offset);
void vtd_write32(u32 offset, u32 value);
u64 vtd_read64(u32 offset);
void vtd_write64(u32 offset, u64 value);

void vtd_probe(u32 base);
/* The §10 update sequence: persistent GSTS bits | one command bit; poll its status. */
bool vtd_command(u32 bit, bool set);

/* Queued invalidation. */
bool vtd_qi_enable(void);
/* Appends descriptors (pairs of qwords; bits 255:128 are zero in a 256-bit queue) and a wait
 * descriptor with SW; polls the status word. */
bool vtd_qi_submit(const u64 *descriptors, u32 count);
/* Appends raw descriptors without a wait of our own and returns at once. */
void vtd_qi_post(const u64 *descriptors, u32 count);

bool vtd_set_root_table(u32 root_table);
/* Write-buffer flush only when CAP.RWBF requires it. */
bool vtd_flush_write_buffer_if_required(void);
/* clflush over a table update when ECAP.C = 0 (counted). */
void vtd_flush_table(const volatile void *p, u32 n);

/* Invalidations: through the queue when it is on, else the registers. False on error. */
bool vtd_invalidate_context_global(void);
bool vtd_invalidate_context_device(u16 sid, u16 did);
bool vtd_invalidate_iotlb_global(void);
bool vtd_invalidate_iotlb_domain(u16 did);
/* Page-selective for 2^am pages at addr; domain-selective if PSI is missing or am > MAMV. */
bool vtd_invalidate_iotlb_pages(u16 did, u64 addr, u32 am);

struct fault_record {
  u32 index;
  bool valid;
  u8 reason, at;
  bool read; /* T1 = 1: read */
  u16 sid;
  u64 address;
  bool pp; /* PASID present: pv holds the request's PASID */
  u32 pv;
};

/* Waits (at most `ms`) for FSTS.PPF; true once a fault is pending. */
bool vtd_wait_fault(u32 ms);
/* Reads FRCD[FSTS.FRI] (dword +12 first). */
struct fault_record vtd_read_fault(void);
/* Clears every valid record and the FSTS error bits. */
void vtd_clear_faults(void);

#endif
