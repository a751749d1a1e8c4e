#include "vtd.h"

#include "console.h"

struct vtd unit;

#define QUEUE_ENTRIES 256 /* IQA.QS = 0: one 4 KiB page of 128-bit descriptors (128 of 256-bit) */
static u64 queue[QUEUE_ENTRIES][2] __attribute__((aligned(4096)));
static u32 queue_tail;
static volatile u32 wait_status __attribute__((aligned(8)));
static u32 wait_sequence;

u32 vtd_read32(u32 offset) { return mmio_read32(unit.base + offset); }
void vtd_write32(u32 offset, u32 value) { mmio_write32(unit.base + offset, value); }

u64 vtd_read64(u32 offset) {
  u32 lo = vtd_read32(offset);
  u32 hi = vtd_read32(offset + 4);
  return (u64)hi << 32 | lo;
}

void vtd_write64(u32 offset, u64 value) {
  vtd_write32(offset, (u32)value);
  vtd_write32(offset + 4, (u32)(value >> 32));
}

void vtd_probe(u32 base) {
  unit.base = base;
  unit.ver = vtd_read32(VTD_REG_VER);
  unit.cap = vtd_read64(VTD_REG_CAP);
  unit.ecap = vtd_read64(VTD_REG_ECAP);
  unit.caching_mode = FIELD_GET(VTD_CAP_CM, unit.cap);
  unit.rwbf = FIELD_GET(VTD_CAP_RWBF, unit.cap);
  unit.coherent = FIELD_GET(VTD_ECAP_C, unit.ecap);
  unit.qi_supported = FIELD_GET(VTD_ECAP_QI, unit.ecap);
  unit.psi = FIELD_GET(VTD_CAP_PSI, unit.cap);
  unit.esrtps = FIELD_GET(VTD_CAP_ESRTPS, unit.cap);
  unit.drain_read = FIELD_GET(VTD_CAP_DRD, unit.cap);
  unit.drain_write = FIELD_GET(VTD_CAP_DWD, unit.cap);
  unit.sagaw = (u32)FIELD_GET(VTD_CAP_SAGAW, unit.cap);
  unit.mgaw = (u32)FIELD_GET(VTD_CAP_MGAW, unit.cap) + 1;
  unit.sllps = (u32)FIELD_GET(VTD_CAP_SLLPS, unit.cap);
  unit.mamv = (u32)FIELD_GET(VTD_CAP_MAMV, unit.cap);
  unit.fault_records = (u32)FIELD_GET(VTD_CAP_NFR, unit.cap) + 1;
  unit.frcd_offset = (u32)FIELD_GET(VTD_CAP_FRO, unit.cap) * 16;
  unit.iva_offset = (u32)FIELD_GET(VTD_ECAP_IRO, unit.ecap) * 16;
  unit.iotlb_offset = unit.iva_offset + 8;
  /* The widest AGAW we can build tables for: 48-bit (4 levels), else 39-bit (3 levels). */
  unit.aw = (unit.sagaw & VTD_SAGAW_48_BIT) ? 2 : (unit.sagaw & VTD_SAGAW_39_BIT) ? 1 : 0;
  unit.aw_width = 30 + 9 * unit.aw;
  unit.levels = unit.aw + 2;
}

/* Polls until (read32(offset) & mask) == want, bounded. */
static bool poll32(u32 offset, u32 mask, u32 want) {
  u64 deadline = deadline_after_ms(VTD_POLL_TIMEOUT_MS);
  while ((vtd_read32(offset) & mask) != want)
    if (deadline_passed(deadline)) return false;
  return true;
}

bool vtd_command(u32 bit, bool set) {
  u32 value = vtd_read32(VTD_REG_GSTS) & (u32)VTD_GSTS_PERSISTENT_MASK;
  value = set ? value | bit : value & ~bit;
  vtd_write32(VTD_REG_GCMD, value);
  /* One-shot commands: SRTP/SIRTP report completion by setting their status, WBF by clearing it. */
  if (bit == VTD_GCMD_SRTP || bit == VTD_GCMD_SIRTP) return poll32(VTD_REG_GSTS, bit, bit);
  if (bit == VTD_GCMD_WBF) return poll32(VTD_REG_GSTS, bit, 0);
  return poll32(VTD_REG_GSTS, bit, set ? bit : 0);
}

void vtd_flush_table(const volatile void *p, u32 n) {
  if (unit.coherent) return;
  unit.counts.table_flushes++;
  unit.counts.cache_lines_flushed += cache_flush_range(p, n);
}

static bool write_buffer_flush(void) {
  unit.counts.write_buffer_flushes++;
  if (vtd_command(VTD_GCMD_WBF, true)) return true;
  result_fail("vtd.write-buffer-flush", "timeout gsts=0x%08x", vtd_read32(VTD_REG_GSTS));
  return false;
}

bool vtd_flush_write_buffer_if_required(void) {
  return unit.rwbf ? write_buffer_flush() : true;
}

/* ---- queued invalidation ---- */

bool vtd_qi_enable(void) {
  queue_tail = 0;
  vtd_write64(VTD_REG_IQT, 0);
  vtd_write64(VTD_REG_IQA, ((u64)(u32)queue & VTD_IQA_IQA) | FIELD_PREP(VTD_IQA_DW, unit.queue_wide) | FIELD_PREP(VTD_IQA_QS, 0));
  unit.queued = vtd_command(VTD_GCMD_QIE, true);
  return unit.queued;
}

static void queue_put(u64 lo, u64 hi) {
  u64 *slot = queue[queue_tail << unit.queue_wide];
  slot[0] = lo;
  slot[1] = hi;
  if (unit.queue_wide) slot[2] = slot[3] = 0;
  queue_tail = (queue_tail + 1) % (QUEUE_ENTRIES >> unit.queue_wide);
}

static void queue_publish(void) {
  memory_fence();
  vtd_write64(VTD_REG_IQT, (u64)queue_tail << (4 + unit.queue_wide));
}

void vtd_qi_post(const u64 *descriptors, u32 count) {
  for (u32 i = 0; i < count; i++) queue_put(descriptors[2 * i], descriptors[2 * i + 1]);
  queue_publish();
}

bool vtd_qi_submit(const u64 *descriptors, u32 count) {
  u32 sequence = ++wait_sequence;
  wait_status = 0;
  for (u32 i = 0; i < count; i++) queue_put(descriptors[2 * i], descriptors[2 * i + 1]);
  queue_put(FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_DESCRIPTOR_TYPE_INVALIDATION_WAIT) | FIELD_PREP(VTD_WAIT_DESC_SW, 1) |
                FIELD_PREP(VTD_WAIT_DESC_STATUS_DATA, sequence),
            (u64)(u32)&wait_status & VTD_WAIT_DESC_STATUS_ADDRESS);
  unit.counts.waits++;
  queue_publish();
  u64 deadline = deadline_after_ms(VTD_POLL_TIMEOUT_MS);
  while (wait_status != sequence) {
    u32 fsts = vtd_read32(VTD_REG_FSTS);
    if (fsts & (VTD_FSTS_IQE | VTD_FSTS_ITE)) {
      result_fail("vtd.queue", "error fsts=0x%08x iqh=0x%x iqt=0x%x iqercd=0x%016llx", fsts, vtd_read32(VTD_REG_IQH),
                  vtd_read32(VTD_REG_IQT), vtd_read64(VTD_REG_IQERCD));
      return false;
    }
    if (deadline_passed(deadline)) {
      result_fail("vtd.queue", "timeout waiting for status write fsts=0x%08x iqh=0x%x iqt=0x%x", fsts,
                  vtd_read32(VTD_REG_IQH), vtd_read32(VTD_REG_IQT));
      return false;
    }
  }
  return true;
}

/* ---- register-based invalidation ---- */

static bool context_command(u32 granularity, u16 sid, u16 did) {
  vtd_write64(VTD_REG_CCMD, FIELD_PREP(VTD_CCMD_ICC, 1) | FIELD_PREP(VTD_CCMD_CIRG, granularity) |
                                FIELD_PREP(VTD_CCMD_FM, 0) | FIELD_PREP(VTD_CCMD_SID, sid) | FIELD_PREP(VTD_CCMD_DID, did));
  if (!poll32(VTD_REG_CCMD + 4, (u32)(VTD_CCMD_ICC_MASK >> 32), 0)) {
    result_fail("vtd.ccmd", "timeout ccmd=0x%016llx", vtd_read64(VTD_REG_CCMD));
    return false;
  }
  u64 ccmd = vtd_read64(VTD_REG_CCMD);
  if (FIELD_GET(VTD_CCMD_CAIG, ccmd) == VTD_GRANULARITY_REFUSED) {
    result_fail("vtd.ccmd", "refused ccmd=0x%016llx", ccmd);
    return false;
  }
  return true;
}

static bool iotlb_command(u32 granularity, u16 did, u64 addr, u32 am) {
  if (granularity == VTD_GRANULARITY_PAGE)
    vtd_write64(unit.iva_offset, (addr & VTD_IVA_ADDR) | FIELD_PREP(VTD_IVA_IH, 0) | FIELD_PREP(VTD_IVA_AM, am));
  u64 keep = vtd_read32(unit.iotlb_offset); /* bits 31:0 are RsvdP */
  vtd_write64(unit.iotlb_offset, keep | FIELD_PREP(VTD_IOTLB_IVT, 1) | FIELD_PREP(VTD_IOTLB_IIRG, granularity) |
                                     FIELD_PREP(VTD_IOTLB_DR, unit.drain_read) | FIELD_PREP(VTD_IOTLB_DW, unit.drain_write) |
                                     FIELD_PREP(VTD_IOTLB_DID, did));
  if (!poll32(unit.iotlb_offset + 4, (u32)(VTD_IOTLB_IVT_MASK >> 32), 0)) {
    result_fail("vtd.iotlb", "timeout iotlb=0x%016llx", vtd_read64(unit.iotlb_offset));
    return false;
  }
  u64 iotlb = vtd_read64(unit.iotlb_offset);
  if (FIELD_GET(VTD_IOTLB_IAIG, iotlb) == VTD_GRANULARITY_REFUSED) {
    result_fail("vtd.iotlb", "refused iotlb=0x%016llx", iotlb);
    return false;
  }
  return true;
}

/* ---- invalidation front end ---- */

static bool invalidate_context(u32 granularity, u16 sid, u16 did) {
  if (!unit.queued) return context_command(granularity, sid, did);
  u64 d[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_DESCRIPTOR_TYPE_CONTEXT_CACHE) |
                  FIELD_PREP(VTD_CONTEXT_CACHE_DESC_G, granularity) | FIELD_PREP(VTD_CONTEXT_CACHE_DESC_DID, did) |
                  FIELD_PREP(VTD_CONTEXT_CACHE_DESC_SID, sid) | FIELD_PREP(VTD_CONTEXT_CACHE_DESC_FM, 0),
              0};
  return vtd_qi_submit(d, 1);
}

static bool invalidate_iotlb(u32 granularity, u16 did, u64 addr, u32 am) {
  if (!unit.queued) return iotlb_command(granularity, did, addr, am);
  u64 d[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_DESCRIPTOR_TYPE_IOTLB) | FIELD_PREP(VTD_IOTLB_DESC_G, granularity) |
                  FIELD_PREP(VTD_IOTLB_DESC_DR, unit.drain_read) | FIELD_PREP(VTD_IOTLB_DESC_DW, unit.drain_write) |
                  FIELD_PREP(VTD_IOTLB_DESC_DID, did),
              granularity == VTD_GRANULARITY_PAGE
                  ? (addr & VTD_IOTLB_DESC_ADDR) | FIELD_PREP(VTD_IOTLB_DESC_IH, 0) | FIELD_PREP(VTD_IOTLB_DESC_AM, am)
                  : 0};
  return vtd_qi_submit(d, 1);
}

bool vtd_invalidate_context_global(void) {
  unit.counts.context_global++;
  return invalidate_context(VTD_GRANULARITY_GLOBAL, 0, 0);
}

bool vtd_invalidate_context_device(u16 sid, u16 did) {
  unit.counts.context_device++;
  return invalidate_context(VTD_GRANULARITY_DEVICE, sid, did);
}

bool vtd_invalidate_iotlb_global(void) {
  unit.counts.iotlb_global++;
  return invalidate_iotlb(VTD_GRANULARITY_GLOBAL, 0, 0, 0);
}

bool vtd_invalidate_iotlb_domain(u16 did) {
  unit.counts.iotlb_domain++;
  return invalidate_iotlb(VTD_GRANULARITY_DOMAIN, did, 0, 0);
}

bool vtd_invalidate_iotlb_pages(u16 did, u64 addr, u32 am) {
  if (!unit.psi || am > unit.mamv) return vtd_invalidate_iotlb_domain(did);
  unit.counts.iotlb_page++;
  return invalidate_iotlb(VTD_GRANULARITY_PAGE, did, addr, am);
}

/* ---- root table ---- */

bool vtd_set_root_table(u32 root_table) {
  if (!vtd_flush_write_buffer_if_required()) return false;
  vtd_write64(VTD_REG_RTADDR, ((u64)root_table & VTD_RTADDR_RTA) | FIELD_PREP(VTD_RTADDR_TTM, 0));
  if (!vtd_command(VTD_GCMD_SRTP, true)) {
    result_fail("vtd.root-table", "RTPS not set gsts=0x%08x", vtd_read32(VTD_REG_GSTS));
    return false;
  }
  if (unit.esrtps) return true;
  return vtd_invalidate_context_global() && vtd_invalidate_iotlb_global();
}

/* ---- fault records ---- */

bool vtd_wait_fault(u32 ms) {
  u64 deadline = deadline_after_ms(ms);
  while (!(vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF) && !deadline_passed(deadline)) {
  }
  return vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF;
}

struct fault_record vtd_read_fault(void) {
  struct fault_record r = {0};
  r.index = (u32)FIELD_GET(VTD_FSTS_FRI, vtd_read32(VTD_REG_FSTS));
  u32 offset = unit.frcd_offset + r.index * VTD_FRCD_SIZE;
  u64 hi = (u64)vtd_read32(offset + 12) << 32;
  r.valid = FIELD_GET(VTD_FRCD_HI_F, hi);
  if (!r.valid) return r;
  hi |= vtd_read32(offset + 8);
  r.reason = (u8)FIELD_GET(VTD_FRCD_HI_FR, hi);
  r.at = (u8)FIELD_GET(VTD_FRCD_HI_AT, hi);
  r.read = FIELD_GET(VTD_FRCD_HI_T1, hi);
  r.sid = (u16)FIELD_GET(VTD_FRCD_HI_SID, hi);
  r.pp = FIELD_GET(VTD_FRCD_HI_PP, hi);
  r.pv = (u32)FIELD_GET(VTD_FRCD_HI_PV, hi);
  r.address = vtd_read64(offset) & VTD_FRCD_LO_FI;
  return r;
}

void vtd_clear_faults(void) {
  for (u32 i = 0; i < unit.fault_records; i++) {
    u32 offset = unit.frcd_offset + i * VTD_FRCD_SIZE + 12;
    if (vtd_read32(offset) & (u32)(VTD_FRCD_HI_F_MASK >> 32)) vtd_write32(offset, (u32)(VTD_FRCD_HI_F_MASK >> 32));
  }
  vtd_write32(VTD_REG_FSTS, (u32)(VTD_FSTS_PFO | VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE));
}
