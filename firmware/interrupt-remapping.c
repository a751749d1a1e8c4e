#include "interrupt-remapping.h"
#include "console.h"
#include "vtd.h"

#define IRT_ENTRIES 256u /* IRTA.S = 7 */
#define IRT_S 7u
#define WAIT_MS 500u     /* for something that must come: returns as soon as it does */
#define QUIET_MS 50u     /* for something that must not come */

/* IRTE indexes and the vectors their entries name. */
#define IDX_EDU 5u           /* edu's MSI: handle 4 + subhandle 1 */
#define IDX_NOT_PRESENT 6u
#define IDX_RESERVED 7u
#define IDX_WRONG_SID 8u
#define IDX_FPD 9u
#define IDX_LATE 10u         /* not present, faults, then made present */
#define IDX_IOAPIC 11u
#define IDX_IOAPIC_MISSING 12u
#define IDX_BEYOND 300u      /* past the 256-entry table */
#define VECTOR_EDU 0x52
#define VECTOR_LATE 0x53
#define VECTOR_IOAPIC 0x54
#define VECTOR_RTE 0x63      /* the RTE's own vector field: never delivered when remapped */
#define VECTOR_COMPAT 0x58

#define MSI_CAPABILITY 0x05
#define MSI_CONTROL_ENABLE 0x1u
#define MSI_CONTROL_64BIT 0x80u
#define EDU_RAISE 0x60
#define EDU_ACK 0x64

#define IOAPIC_BASE 0xFEC00000u
#define IOAPIC_RTE_MASKED (1u << 16)
#define IOAPIC_RTE_REMAPPABLE (1u << 16) /* upper dword: interrupt format */
#define RTC_IRQ 8u

static u8 irt[IRT_ENTRIES * VTD_IRTE_SIZE] __attribute__((aligned(4096)));
static const struct edu *edu;
static struct ir_options opt;
static u8 msi_cap;
static u16 ioapic_sid;
static u32 iec_global, iec_index;

/* ---- the table and its cache ---- */

static void irte_write(u32 index, u64 lo, u64 hi) {
  volatile u64 *e = (volatile u64 *)&irt[index * VTD_IRTE_SIZE];
  e[1] = hi; /* P lives in the low qword: write it last */
  barrier();
  e[0] = lo;
  vtd_flush_table(e, VTD_IRTE_SIZE);
  vtd_flush_write_buffer_if_required(); /* CAP.RWBF: the unit may not see the entry before */
}

/* A remapped-format entry to this CPU (xAPIC: APIC id in DST[15:8]), checked against `sid`. */
static void irte_set(u32 index, bool present, bool fpd, u8 vector, u16 sid) {
  u64 lo = FIELD_PREP(VTD_IRTE_LO_P, present) | FIELD_PREP(VTD_IRTE_LO_FPD, fpd) | FIELD_PREP(VTD_IRTE_LO_V, vector) |
           FIELD_PREP(VTD_IRTE_LO_DST, (u64)lapic_id() << 8);
  u64 hi = FIELD_PREP(VTD_IRTE_HI_SVT, VTD_SOURCE_VALIDATION_TYPE_REQUESTER_ID) | FIELD_PREP(VTD_IRTE_HI_SID, sid);
  irte_write(index, lo, hi);
}

static bool iec_invalidate(bool global, u32 index) {
  u64 d[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_DESCRIPTOR_TYPE_INTERRUPT_ENTRY_CACHE) |
                  FIELD_PREP(VTD_INTERRUPT_ENTRY_CACHE_DESC_G, global ? 0 : 1) |
                  FIELD_PREP(VTD_INTERRUPT_ENTRY_CACHE_DESC_IIDX, global ? 0 : index),
              0};
  if (global) iec_global++;
  else iec_index++;
  return vtd_qi_submit(d, 1);
}

/* ---- interrupt sources ---- */

/* edu's MSI in remappable format: handle, and with SHV the subhandle in the data. */
static void edu_msi_remappable(u32 handle, bool shv, u16 subhandle) {
  u32 address = VTD_INTERRUPT_RANGE_BASE | FIELD_PREP(VTD_REMAPPABLE_ADDRESS_HANDLE, handle & 0x7FFF) |
                FIELD_PREP(VTD_REMAPPABLE_ADDRESS_INTERRUPT_FORMAT, 1) | FIELD_PREP(VTD_REMAPPABLE_ADDRESS_SHV, shv) |
                FIELD_PREP(VTD_REMAPPABLE_ADDRESS_HANDLE_15, handle >> 15);
  bool wide = pci_read16(edu->pci, (u8)(msi_cap + 2)) & MSI_CONTROL_64BIT;
  pci_write32(edu->pci, (u8)(msi_cap + 4), address);
  if (wide) pci_write32(edu->pci, (u8)(msi_cap + 8), 0);
  pci_write16(edu->pci, (u8)(msi_cap + (wide ? 12 : 8)), subhandle);
}

static void edu_msi_compatibility(u8 vector) {
  bool wide = pci_read16(edu->pci, (u8)(msi_cap + 2)) & MSI_CONTROL_64BIT;
  pci_write32(edu->pci, (u8)(msi_cap + 4), VTD_INTERRUPT_RANGE_BASE | lapic_id() << 12);
  if (wide) pci_write32(edu->pci, (u8)(msi_cap + 8), 0);
  pci_write16(edu->pci, (u8)(msi_cap + (wide ? 12 : 8)), vector);
}

/* edu raises its interrupt (an MSI when enabled), then it is acknowledged at the device. */
static void edu_interrupt(void) {
  edu_write(edu, EDU_RAISE, 1);
  u64 settle = deadline_after_ms(1);
  while (!deadline_passed(settle)) {
  }
  edu_write(edu, EDU_ACK, 1);
}

static bool wait_vector(u8 vector, u32 before) {
  return interrupt_wait(vector, before, WAIT_MS);
}

static void ioapic_write(u32 reg, u32 value) {
  mmio_write32(IOAPIC_BASE, reg);
  mmio_write32(IOAPIC_BASE + 0x10, value);
}

/* The RTC's line through the I/O APIC in remappable format (VT-d §5.1.5.1), edge-triggered. */
static void ioapic_route_rtc(u32 index, bool masked) {
  u32 reg = 0x10 + 2 * RTC_IRQ;
  ioapic_write(reg, VECTOR_RTE | IOAPIC_RTE_MASKED);
  ioapic_write(reg + 1, (index & 0x7FFF) << 17 | IOAPIC_RTE_REMAPPABLE);
  ioapic_write(reg, VECTOR_RTE | (index >> 15) << 11 | (masked ? IOAPIC_RTE_MASKED : 0));
}

static u8 cmos_read(u8 reg) {
  outb(0x70, reg);
  return inb(0x71);
}

static void cmos_write(u8 reg, u8 value) {
  outb(0x70, reg);
  outb(0x71, value);
}

static void rtc_periodic(bool on) {
  cmos_read(0x0C); /* acknowledges: the line goes low */
  if (on) cmos_write(0x0A, 0x26);
  cmos_write(0x0B, on ? cmos_read(0x0B) | 0x40 : cmos_read(0x0B) & ~0x40);
  if (!on) cmos_read(0x0C);
}

/* ---- faults ---- */

static bool wait_fault(void) {
  return vtd_wait_fault(WAIT_MS);
}

/*
 * The interrupt-remapping fault an edu interrupt (or the RTC) just caused: record, index, fault
 * event. `sid` < 0: the record's source-id is only reported (PLATFORM), not checked: QEMU 10.0's
 * I/O APIC sends without a requester id (0xFFFF; docs/conformance.md I14).
 */
static void expect_ir_fault(const char *test, u8 reason, int sid, u32 index, u32 fault_msis_before) {
  char name[80];
  bool recorded = wait_fault();
  struct fault_record r = vtd_read_fault();
  u32 fi_index = (u32)(r.address >> 48);
  if (sid < 0) platform("%s.sid 0x%04x", test, r.sid);
  check(join(name, test, ".record"),
        recorded && r.valid && r.reason == reason && (sid < 0 || r.sid == sid) && fi_index == index,
        "f=%u fr=0x%x sid=0x%04x index %u (want fr=0x%x sid=0x%04x index %u)", r.valid, r.reason, r.sid, fi_index, reason,
        sid < 0 ? r.sid : sid, index);
  wait_vector(opt.fault_vector, fault_msis_before);
  u32 msis = interrupt_count(opt.fault_vector) - fault_msis_before;
  check(join(name, test, ".fault-event"), msis == 1, "fault MSIs %u (want 1)", msis);
  vtd_clear_faults();
}

static void edu_fault(const char *test, u32 handle, u8 reason, u32 index) {
  u32 before = interrupt_count(opt.fault_vector);
  edu_msi_remappable(handle, false, 0);
  edu_interrupt();
  expect_ir_fault(test, reason, edu->sid, index, before);
}

/* ---- the checks ---- */

static bool enable(void) {
  memset(irt, 0, sizeof(irt));
  vtd_flush_table(irt, sizeof(irt));
  vtd_write64(VTD_REG_IRTA, ((u64)(u32)irt & VTD_IRTA_IRTA) | FIELD_PREP(VTD_IRTA_S, IRT_S));
  if (!check("ir.table-pointer", vtd_command(VTD_GCMD_SIRTP, true), "IRTPS not set gsts=0x%08x", vtd_read32(VTD_REG_GSTS)))
    return false;
  check("ir.iec-global", iec_invalidate(true, 0), "invalidation failed");
  /* Linux blocks compatibility-format interrupts: CFI stays 0. */
  if (!check("ir.enable", vtd_command(VTD_GCMD_IRE, true), "IRES not set gsts=0x%08x", vtd_read32(VTD_REG_GSTS))) return false;
  u32 gsts = vtd_read32(VTD_REG_GSTS);
  u32 want = (u32)(VTD_GSTS_QIES | VTD_GSTS_IRTPS | VTD_GSTS_IRES);
  check("ir.gsts", (gsts & want) == want && !(gsts & VTD_GSTS_CFIS), "gsts=0x%08x", gsts);
  return true;
}

static void test_edu_msi(void) {
  irte_set(IDX_EDU, true, false, VECTOR_EDU, edu->sid);
  check("ir.iec-index", iec_invalidate(false, IDX_EDU), "invalidation failed");
  edu_msi_remappable(IDX_EDU - 1, true, 1);
  u16 control = pci_read16(edu->pci, (u8)(msi_cap + 2));
  pci_write16(edu->pci, (u8)(msi_cap + 2), control | MSI_CONTROL_ENABLE);
  u32 before = interrupt_count(VECTOR_EDU);
  edu_interrupt();
  bool seen = wait_vector(VECTOR_EDU, before);
  check("ir.edu-msi", seen && interrupt_count(VECTOR_EDU) - before == 1 && !(vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF),
        "vector 0x%x seen %u times fsts=0x%08x", VECTOR_EDU, interrupt_count(VECTOR_EDU) - before, vtd_read32(VTD_REG_FSTS));
}

static void test_faults(void) {
  irte_set(IDX_NOT_PRESENT, false, false, VECTOR_EDU, edu->sid);
  edu_fault("ir.fault.not-present", IDX_NOT_PRESENT, VTD_FAULT_REASON_IRTE_NOT_PRESENT, IDX_NOT_PRESENT);
  edu_fault("ir.fault.index-beyond-table", IDX_BEYOND, VTD_FAULT_REASON_INTERRUPT_INDEX_BEYOND_TABLE, IDX_BEYOND);
  irte_set(IDX_WRONG_SID, true, false, VECTOR_EDU, (u16)(edu->sid + 1));
  edu_fault("ir.fault.source-id", IDX_WRONG_SID, VTD_FAULT_REASON_SOURCE_ID_VERIFICATION_FAILED, IDX_WRONG_SID);
  /* A present entry with a reserved bit set (bit 104, in the high qword's reserved 127:84). */
  irte_write(IDX_RESERVED, FIELD_PREP(VTD_IRTE_LO_P, 1) | FIELD_PREP(VTD_IRTE_LO_V, VECTOR_EDU) |
                               FIELD_PREP(VTD_IRTE_LO_DST, (u64)lapic_id() << 8),
             FIELD_PREP(VTD_IRTE_HI_SVT, VTD_SOURCE_VALIDATION_TYPE_REQUESTER_ID) | FIELD_PREP(VTD_IRTE_HI_SID, edu->sid) |
                 (1ull << 40));
  edu_fault("ir.fault.reserved", IDX_RESERVED, VTD_FAULT_REASON_IRTE_RESERVED, IDX_RESERVED);

  /* FPD = 1: a not-present entry's fault is qualified, so it is not recorded. */
  irte_set(IDX_FPD, false, true, VECTOR_EDU, edu->sid);
  u32 before = interrupt_count(opt.fault_vector);
  edu_msi_remappable(IDX_FPD, false, 0);
  edu_interrupt();
  bool recorded = vtd_wait_fault(QUIET_MS);
  check("ir.fault.fpd-suppressed", !recorded && interrupt_count(opt.fault_vector) == before, "fsts=0x%08x fault MSIs %u",
        vtd_read32(VTD_REG_FSTS), interrupt_count(opt.fault_vector) - before);
  vtd_clear_faults();
}

/* A not-present IRTE faults, becomes present, and the IEC is (or, with the option, is not) invalidated. */
static void test_entry_made_present(void) {
  irte_set(IDX_LATE, false, false, VECTOR_LATE, edu->sid);
  edu_fault("ir.fault.before-present", IDX_LATE, VTD_FAULT_REASON_IRTE_NOT_PRESENT, IDX_LATE);
  irte_set(IDX_LATE, true, false, VECTOR_LATE, edu->sid);
  bool skip = opt.skip_iec_invalidation && unit.caching_mode;
  if (opt.skip_iec_invalidation && !unit.caching_mode) info("ir.skip-iec-invalidation not applicable (CAP.CM = 0)");
  if (!skip) check("ir.iec-after-present", iec_invalidate(false, IDX_LATE), "invalidation failed");
  u32 before = interrupt_count(VECTOR_LATE);
  edu_msi_remappable(IDX_LATE, false, 0);
  edu_interrupt();
  bool delivered = wait_vector(VECTOR_LATE, before);
  if (!skip) {
    check("ir.after-present", delivered, "vector 0x%x not seen fsts=0x%08x", VECTOR_LATE, vtd_read32(VTD_REG_FSTS));
    return;
  }
  bool stale = wait_fault();
  struct fault_record r = vtd_read_fault();
  if (stale) info("ir.stale-fault reason 0x%x", r.reason);
  result_observed("ir.stale-fault", stale && !delivered ? "OBSERVED" : "NOT-OBSERVED");
  vtd_clear_faults();
  check("ir.iec-late", iec_invalidate(false, IDX_LATE), "invalidation failed");
}

/* Compatibility format while remapping is on and CFIS = 0: blocked (the spec), passed (QEMU 10.0). */
static void observe_compatibility_format(void) {
  u32 before = interrupt_count(VECTOR_COMPAT);
  edu_msi_compatibility(VECTOR_COMPAT);
  edu_interrupt();
  bool delivered = interrupt_wait(VECTOR_COMPAT, before, QUIET_MS);
  bool recorded = !delivered && wait_fault();
  struct fault_record r = vtd_read_fault();
  platform("ir.compatibility-format %s reason 0x%x", delivered ? "passed" : "blocked", recorded ? r.reason : 0);
  vtd_clear_faults();
}

static void test_ioapic(void) {
  if (!check("dmar.ioapic-in-scope", ioapic_sid != 0, "no I/O APIC scope under the unit")) return;
  platform("ir.ioapic.sid 0x%04x", ioapic_sid);
  irte_set(IDX_IOAPIC, true, false, VECTOR_IOAPIC, ioapic_sid);
  check("ir.ioapic.iec", iec_invalidate(false, IDX_IOAPIC), "invalidation failed");
  ioapic_route_rtc(IDX_IOAPIC, false);
  u32 rte_vector = interrupt_count(VECTOR_RTE);
  u32 before_ioapic = interrupt_count(VECTOR_IOAPIC);
  rtc_periodic(true); /* 1024 Hz: until the first interrupt */
  bool seen = wait_vector(VECTOR_IOAPIC, before_ioapic);
  rtc_periodic(false);
  check("ir.ioapic.remapped", seen && interrupt_count(VECTOR_RTE) == rte_vector && !(vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF),
        "IRTE vector seen %u, RTE vector %u fsts=0x%08x", seen, interrupt_count(VECTOR_RTE) - rte_vector,
        vtd_read32(VTD_REG_FSTS));

  /* The same line through an index whose IRTE is not present: the fault names the I/O APIC. */
  ioapic_route_rtc(IDX_IOAPIC_MISSING, false);
  u32 before = interrupt_count(opt.fault_vector);
  rtc_periodic(true); /* blocked: the fault comes instead of the vector */
  wait_fault();
  rtc_periodic(false);
  expect_ir_fault("ir.ioapic.fault", VTD_FAULT_REASON_IRTE_NOT_PRESENT, -1, IDX_IOAPIC_MISSING, before);
  ioapic_route_rtc(IDX_IOAPIC, true);
}

bool ir_run(const struct dmar_unit *dmar_unit, const struct edu *e, struct ir_options options) {
  edu = e;
  opt = options;
  info("option.skip-iec-invalidation %u", options.skip_iec_invalidation);
  if (!FIELD_GET(VTD_ECAP_IR, unit.ecap)) {
    info("ir skipped (ECAP.IR = 0)");
    return false;
  }
  if (!unit.queued) {
    info("ir skipped (no queued invalidation)");
    return false;
  }
  for (u32 s = 0; s < dmar_unit->scope_count; s++) {
    const struct dmar_scope *sc = &dmar_unit->scopes[s];
    if (sc->type == VTD_DEVICE_SCOPE_TYPE_IO_APIC && sc->path_length == 1)
      ioapic_sid = (u16)(sc->start_bus << 8 | sc->path[0][0] << 3 | sc->path[0][1]);
  }
  msi_cap = pci_find_capability(edu->pci, MSI_CAPABILITY);
  if (!check("ir.edu-msi-capability", msi_cap != 0, "edu has no MSI capability")) return false;
  if (!enable()) return false;
  test_edu_msi();
  test_faults();
  test_entry_made_present();
  observe_compatibility_format();
  test_ioapic();
  u16 control = pci_read16(edu->pci, (u8)(msi_cap + 2));
  pci_write16(edu->pci, (u8)(msi_cap + 2), control & ~MSI_CONTROL_ENABLE);
  info("count.iec global %u index %u", iec_global, iec_index);
  return true;
}
