/*
 * vtd-test: a bare-metal multiboot guest that drives a VT-d unit the way Linux does and checks
 * it through QEMU's edu DMA device. It prints a transcript (see console.h) and exits through
 * port 0xF4 with 0 when every RESULT passed.
 *
 * Command line (multiboot): `skip-cm-invalidation` leaves out the CM = 1 invalidation after the
 * context entry becomes present, once, and reports whether a stale fault is then seen;
 * `no-qi` uses register-based invalidation even when queued invalidation is offered.
 * `skip-iec-invalidation` leaves out, once, the interrupt-entry-cache invalidation after an IRTE
 * that faulted becomes present (interrupt-remapping.c), and reports whether the fault is seen again.
 * `skip-cache-flush` leaves out, once, the CLFLUSH of an unmapped page's table entry (ECAP.C = 0)
 * and reports whether the device still reaches the page after the IOTLB invalidation.
 * `translation-off` never enables translation: only the untranslated DMA and the workload run
 * (the baseline of the boot-to-exit benchmark). `dma-rounds=N` adds a workload of N edu DMA
 * round trips (to the device and back, 2 KiB each way), translated unless `translation-off`.
 * `scalable` runs the scalable-mode section (scalable.c) instead of the legacy translation checks
 * when the unit offers it (ECAP.SMTS), with a 256-bit invalidation queue.
 */
#include "acpi.h"
#include "console.h"
#include "edu.h"
#include "interrupt-remapping.h"
#include "scalable.h"
#include "tables.h"
#include "vtd.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define FAULT_VECTOR 0x40
#define COMPLETION_VECTOR 0x41
#define INTERRUPT_WAIT_MS 500

/* IOVAs of the test domain; below 2^28 (edu's default DMA mask) and distinct from their PAs. */
#define IOVA_A 0x08000000ull     /* read/write */
#define IOVA_B 0x08001000ull     /* read/write */
#define IOVA_RO 0x08002000ull    /* read-only */
#define IOVA_NP 0x08003000ull    /* not present until map.after-fault */
#define IOVA_UNMAP 0x08004000ull /* mapped, used, then unmapped */
#define IOVA_SUPER 0x0C000000ull /* two 2 MiB pages */
#define SUPER_PHYSICAL 0x00400000u
#define SUPER_SIZE 0x00200000u
/*
 * Large DMAs move 2 KiB: QEMU 7.2's edu refuses a DMA that ends exactly at the end of its
 * 4 KiB buffer (its range check is off by one), so the full buffer cannot be used.
 */
#define DMA_SIZE 2048u
#define SUPER_CROSSING (SUPER_SIZE - DMA_SIZE / 2) /* a DMA here crosses into the second page */

static u8 buf_a[4096] __attribute__((aligned(4096)));
static u8 buf_b[4096] __attribute__((aligned(4096)));
static u8 buf_ro[4096] __attribute__((aligned(4096)));
static u8 buf_np[4096] __attribute__((aligned(4096)));
static u8 buf_unmap[4096] __attribute__((aligned(4096)));

extern const u8 __image_end[];

static struct edu edu;
static struct dmar_info dmar;
static bool option_skip_cm, option_skip_iec, option_skip_flush, option_no_qi, option_translation_off, option_scalable;
static u32 option_dma_rounds;
static bool interrupt_remapping; /* enabled by ir_run: GSTS.IRES and IRTPS stay set */
static u32 ram_top_below_4g; /* end of the RAM region that holds 1 MiB */

/* ---- helpers ---- */


static void fill(u8 *p, u32 n, u8 seed) {
  for (u32 i = 0; i < n; i++) p[i] = (u8)(i * 7 + seed) ^ (u8)(i >> 8);
}

static bool has_word(const char *s, const char *word) {
  u32 n = 0;
  while (word[n]) n++;
  for (const char *p = s; *p; p++) {
    bool start = p == s || p[-1] == ' ';
    if (start && memcmp(p, word, n) == 0 && (p[n] == 0 || p[n] == ' ')) return true;
  }
  return false;
}

/* The decimal value of `key=` in the command line, or 0. */
static u32 word_value(const char *s, const char *key) {
  u32 n = 0;
  while (key[n]) n++;
  for (const char *p = s; *p; p++) {
    if ((p == s || p[-1] == ' ') && memcmp(p, key, n) == 0) {
      u32 v = 0;
      for (p += n; *p >= '0' && *p <= '9'; p++) v = v * 10 + (u32)(*p - '0');
      return v;
    }
  }
  return 0;
}

static u32 fsts_errors(void) {
  return vtd_read32(VTD_REG_FSTS) & ~(u32)VTD_FSTS_FRI_MASK;
}

static u32 msi_address(void) {
  return VTD_INTERRUPT_RANGE_BASE | lapic_id() << 12;
}

/* A DMA that must complete; a timeout is a FAIL of `name`. */
static bool dma(const char *name, enum edu_direction dir, u64 iova, u32 offset, u32 count) {
  if (edu_dma(&edu, dir, iova, offset, count)) return true;
  result_fail(name, "edu DMA did not finish (timeout)");
  return false;
}

static void wait_for_interrupt(u8 vector, u32 before) {
  interrupt_wait(vector, before, INTERRUPT_WAIT_MS);
}

/* Checks the fault a DMA just caused: the record, the fault MSI, and that clearing works. */
static void expect_fault(const char *test, u8 reason, u64 address, bool read, u32 msi_before) {
  char name[80];
  vtd_wait_fault(INTERRUPT_WAIT_MS);
  wait_for_interrupt(FAULT_VECTOR, msi_before);
  u32 fsts = vtd_read32(VTD_REG_FSTS);
  struct fault_record r = vtd_read_fault();
  u64 page = address & ~0xFFFull;
  check(join(name, test, ".record"),
        (fsts & VTD_FSTS_PPF) && r.valid && r.reason == reason && r.sid == edu.sid && r.address == page &&
            r.read == read && r.at == 0,
        "fsts=0x%08x frcd[%u] f=%u fr=0x%x sid=0x%04x addr=0x%llx t=%s at=%u (want fr=0x%x sid=0x%04x addr=0x%llx t=%s)",
        fsts, r.index, r.valid, r.reason, r.sid, r.address, r.read ? "read" : "write", r.at, reason, edu.sid, page,
        read ? "read" : "write");
  u32 msis = interrupt_count(FAULT_VECTOR) - msi_before;
  check(join(name, test, ".msi"), msis == 1, "fault MSIs received %u (want 1) fectl=0x%08x", msis,
        vtd_read32(VTD_REG_FECTL));
  vtd_clear_faults();
  u32 errors = fsts_errors(), fectl = vtd_read32(VTD_REG_FECTL);
  check(join(name, test, ".clear"), errors == 0 && fectl == 0, "fsts=0x%08x fectl=0x%08x after clearing", errors, fectl);
}

/* ---- boot information ---- */

static void read_multiboot(u32 magic, const u32 *mbi) {
  check("boot.multiboot", magic == MULTIBOOT_BOOTLOADER_MAGIC, "eax=0x%08x", magic);
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) return;
  u32 flags = mbi[0];
  if (flags & (1u << 2)) {
    const char *cmdline = (const char *)mbi[4];
    option_skip_cm = has_word(cmdline, "skip-cm-invalidation");
    option_skip_iec = has_word(cmdline, "skip-iec-invalidation");
    option_skip_flush = has_word(cmdline, "skip-cache-flush");
    option_no_qi = has_word(cmdline, "no-qi");
    option_translation_off = has_word(cmdline, "translation-off");
    option_dma_rounds = word_value(cmdline, "dma-rounds=");
    option_scalable = has_word(cmdline, "scalable");
  }
  info("option.skip-cm-invalidation %u", option_skip_cm);
  info("option.no-qi %u", option_no_qi);
  info("option.translation-off %u", option_translation_off);
  info("option.dma-rounds %u", option_dma_rounds);
  u32 total_kib = 0;
  if (flags & (1u << 6)) {
    for (u32 p = mbi[12]; p < mbi[12] + mbi[11];) {
      const u32 *e = (const u32 *)p; /* size, base lo, base hi, length lo, length hi, type */
      if (e[5] == 1 && e[2] == 0) {
        u64 end = (u64)e[1] + ((u64)e[4] << 32 | e[3]);
        if (end > 0xFFFFFFFFull) end = 0xFFFFFFFFull;
        total_kib += (u32)((end - e[1]) >> 10);
        if (e[1] <= 0x100000 && end > 0x100000) ram_top_below_4g = (u32)end;
      }
      p += e[0] + 4;
    }
  } else if (flags & 1u) {
    ram_top_below_4g = 0x100000 + mbi[2] * 1024;
    total_kib = mbi[1] + mbi[2];
  }
  platform("memory.kib %u", total_kib);
  platform("memory.top-below-4g 0x%08x", ram_top_below_4g);
}

static const struct dmar_unit *find_unit(void) {
  const char *why = "";
  if (!check("acpi.dmar", acpi_find_dmar(&dmar, &why), "%s", why)) return 0;
  platform("acpi.rsdp 0x%08x", dmar.rsdp);
  platform("acpi.dmar 0x%08x", dmar.table);
  info("dmar.haw %u", dmar.haw_minus_one + 1u);
  info("dmar.flags 0x%02x", dmar.flags);
  info("dmar.units %u", dmar.unit_count);
  info("dmar.other-structures %u", dmar.other_structures);
  for (u32 i = 0; i < dmar.unit_count; i++) {
    const struct dmar_unit *u = &dmar.units[i];
    info("dmar.unit%u.base 0x%016llx", i, u->base);
    info("dmar.unit%u.flags 0x%02x segment %u", i, u->flags, u->segment);
    for (u32 s = 0; s < u->scope_count; s++) {
      const struct dmar_scope *sc = &u->scopes[s];
      console_printf("PLATFORM dmar.unit%u.scope%u type %u id %u bus %u path", i, s, sc->type, sc->enumeration_id,
                     sc->start_bus);
      for (u32 p = 0; p < sc->path_length; p++) console_printf(" %02x.%u", sc->path[p][0], sc->path[p][1]);
      console_printf("\n");
    }
  }
  for (u32 i = 0; i < dmar.unit_count; i++)
    if (dmar.units[i].segment == 0 && dmar_unit_covers(&dmar.units[i], edu.pci)) {
      result_pass("dmar.edu-in-scope");
      return &dmar.units[i];
    }
  result_fail("dmar.edu-in-scope", "no DRHD lists %02x:%02x.%u", edu.pci.bus, edu.pci.dev, edu.pci.fn);
  return 0;
}

static bool find_edu(void) {
  if (!check("pci.edu", edu_find(&edu), "no %04x:%04x on bus 0", EDU_VENDOR, EDU_DEVICE)) return false;
  platform("edu.bdf %02x:%02x.%u", edu.pci.bus, edu.pci.dev, edu.pci.fn);
  platform("edu.sid 0x%04x", edu.sid);
  platform("edu.bar0 0x%08x", edu.bar0);
  edu_enable(&edu);
  u32 id = edu_read(&edu, 0x00);
  check("edu.identity", id == 0x010000ED, "id register 0x%08x", id);
  edu_write(&edu, 0x04, 0x12345678);
  u32 live = edu_read(&edu, 0x04);
  return check("edu.liveness", live == ~0x12345678u, "liveness 0x%08x", live);
}

static void report_unit(void) {
  info("unit.ver 0x%08x", unit.ver);
  info("unit.cap 0x%016llx", unit.cap);
  info("unit.ecap 0x%016llx", unit.ecap);
  info("unit.caching-mode %u", unit.caching_mode);
  info("unit.rwbf %u", unit.rwbf);
  info("unit.coherent %u", unit.coherent);
  info("unit.queued-invalidation %u", unit.qi_supported);
  info("unit.sagaw 0x%x mgaw %u", unit.sagaw, unit.mgaw);
  info("unit.sllps 0x%x psi %u mamv %u", unit.sllps, unit.psi, unit.mamv);
  info("unit.fault-records %u at 0x%x", unit.fault_records, unit.frcd_offset);
  info("unit.iotlb-register 0x%x", unit.iotlb_offset);
  info("unit.context-aw %u (%u-bit, %u levels)", unit.aw, unit.aw_width, unit.levels);
  platform("cpu.clflush cpuid %u usable %u", cpu_clflush_in_cpuid(), cpu_has_clflush());
  u32 top = unit.frcd_offset + unit.fault_records * VTD_FRCD_SIZE;
  check("unit.sane", unit.ver != 0xFFFFFFFF && unit.cap != ~0ull && unit.aw != 0 && top <= 0x1000 && unit.iotlb_offset < 0x1000,
        "ver 0x%08x cap 0x%016llx ecap 0x%016llx", unit.ver, unit.cap, unit.ecap);
  u32 gsts = vtd_read32(VTD_REG_GSTS), fectl = vtd_read32(VTD_REG_FECTL);
  check("unit.reset-state", gsts == 0 && fectl == (u32)VTD_EVENT_CONTROL_IM, "gsts=0x%08x fectl=0x%08x", gsts, fectl);
}

/* ---- the tests ---- */

static void test_untranslated(void) {
  fill(buf_a, sizeof(buf_a), 0x11);
  memset(buf_b, 0, sizeof(buf_b));
  bool ok = dma("dma.untranslated", EDU_TO_DEVICE, (u32)buf_a, 0, DMA_SIZE) &&
            dma("dma.untranslated", EDU_TO_RAM, (u32)buf_b, 0, DMA_SIZE);
  if (ok) check("dma.untranslated", memcmp(buf_a, buf_b, DMA_SIZE) == 0, "data differs (translation off)");
}

static void setup_invalidation(void) {
  if (option_no_qi) {
    info("invalidation register-based (option no-qi)");
  } else if (!unit.qi_supported) {
    info("invalidation register-based (ECAP.QI = 0)");
  } else if (check("qi.enable", vtd_qi_enable(), "QIES not set gsts=0x%08x", vtd_read32(VTD_REG_GSTS))) {
    u32 iqh = vtd_read32(VTD_REG_IQH);
    check("qi.head-reset", iqh == 0, "iqh=0x%x", iqh);
    info("invalidation queued");
  } else {
    info("invalidation register-based (QIES never set)");
  }
}

static void setup_fault_event(void) {
  vtd_write32(VTD_REG_FEDATA, FAULT_VECTOR);
  vtd_write32(VTD_REG_FEADDR, msi_address());
  vtd_write32(VTD_REG_FEUADDR, 0);
  vtd_write32(VTD_REG_FECTL, 0);
  u32 fectl = vtd_read32(VTD_REG_FECTL);
  check("fault-event.unmask", fectl == 0, "fectl=0x%08x", fectl);
}

static bool superpages_possible(void) {
  if (!(unit.sllps & VTD_SLLPS_2M)) {
    info("superpage unavailable (CAP.SLLPS has no 2 MiB)");
    return false;
  }
  if ((u32)__image_end > SUPER_PHYSICAL || ram_top_below_4g < SUPER_PHYSICAL + 2 * SUPER_SIZE) {
    info("superpage unavailable (RAM 4-8 MiB not free)");
    return false;
  }
  info("superpage 2M");
  return true;
}

static bool build_mappings(bool superpages) {
  bool ok = map_page(IOVA_A, (u32)buf_a, PAGE_4K, ACCESS_READ_WRITE) &&
            map_page(IOVA_B, (u32)buf_b, PAGE_4K, ACCESS_READ_WRITE) &&
            map_page(IOVA_RO, (u32)buf_ro, PAGE_4K, ACCESS_READ) &&
            map_page(IOVA_UNMAP, (u32)buf_unmap, PAGE_4K, ACCESS_READ_WRITE);
  if (ok && superpages)
    ok = map_page(IOVA_SUPER, SUPER_PHYSICAL, PAGE_2M, ACCESS_READ_WRITE) &&
         map_page(IOVA_SUPER + SUPER_SIZE, SUPER_PHYSICAL + SUPER_SIZE, PAGE_2M, ACCESS_READ_WRITE);
  return check("tables.map", ok, "mapping failed");
}

static void enable_translation(void) {
  check("te.enable", vtd_command(VTD_GCMD_TE, true), "TES not set gsts=0x%08x", vtd_read32(VTD_REG_GSTS));
  /* Linux then turns off the protected memory regions, when the unit has them. */
  if (FIELD_GET(VTD_CAP_PLMR, unit.cap) || FIELD_GET(VTD_CAP_PHMR, unit.cap)) {
    vtd_write32(VTD_REG_PMEN, 0);
    u64 deadline = deadline_after_ms(VTD_POLL_TIMEOUT_MS);
    while ((vtd_read32(VTD_REG_PMEN) & VTD_PMEN_PRS) && !deadline_passed(deadline)) {
    }
  }
  u32 gsts = vtd_read32(VTD_REG_GSTS);
  u32 want = (u32)(VTD_GSTS_TES | VTD_GSTS_RTPS) | (unit.queued ? (u32)VTD_GSTS_QIES : 0) |
             (interrupt_remapping ? (u32)(VTD_GSTS_IRES | VTD_GSTS_IRTPS) : 0);
  check("gsts.after-enable", gsts == want, "gsts=0x%08x want 0x%08x", gsts, want);
}

/* The device's context entry becomes present; with the option, its CM invalidation is skipped once. */
static void install_context(void) {
  bool skip = option_skip_cm && unit.caching_mode;
  if (option_skip_cm && !unit.caching_mode) info("cm.skip-invalidation not applicable (CAP.CM = 0)");
  check("context.install", context_install(edu.pci, skip), "invalidation failed");
  if (!skip) return;
  /* Observe: does the unit still use the not-present context entry it may have cached? */
  u32 before = interrupt_count(FAULT_VECTOR);
  fill(buf_a, sizeof(buf_a), 0x22);
  dma("cm.stale-fault", EDU_TO_DEVICE, IOVA_A, 0, 64);
  wait_for_interrupt(FAULT_VECTOR, before);
  struct fault_record r = vtd_read_fault();
  bool stale = (vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF) && r.valid;
  if (stale) info("cm.stale-fault reason 0x%x", r.reason);
  result_observed("cm.stale-fault", stale ? "OBSERVED" : "NOT-OBSERVED");
  vtd_clear_faults();
  check("context.invalidate-late", context_invalidate_after_install(edu.pci), "invalidation failed");
}

static void test_translated(void) {
  fill(buf_a, sizeof(buf_a), 0x33);
  memset(buf_b, 0, sizeof(buf_b));
  if (dma("dma.to-device.translated", EDU_TO_DEVICE, IOVA_A, 0, DMA_SIZE)) {
    u32 errors = fsts_errors();
    check("dma.to-device.translated", errors == 0, "fsts=0x%08x", errors);
  }
  if (dma("dma.from-device.translated", EDU_TO_RAM, IOVA_B, 0, DMA_SIZE)) {
    u32 errors = fsts_errors();
    check("dma.from-device.translated", errors == 0 && memcmp(buf_a, buf_b, DMA_SIZE) == 0, "fsts=0x%08x or data differs",
          errors);
  }
}

static void test_superpage(void) {
  u8 *phys = (u8 *)(SUPER_PHYSICAL + SUPER_CROSSING);
  fill(phys, DMA_SIZE, 0x44);
  memset(buf_b, 0, sizeof(buf_b));
  bool ok = dma("dma.superpage.to-device", EDU_TO_DEVICE, IOVA_SUPER + SUPER_CROSSING, 0, DMA_SIZE) &&
            dma("dma.superpage.to-device", EDU_TO_RAM, IOVA_B, 0, DMA_SIZE);
  if (ok)
    check("dma.superpage.to-device", fsts_errors() == 0 && memcmp(phys, buf_b, DMA_SIZE) == 0,
          "fsts=0x%08x or data differs", fsts_errors());
  memset(phys, 0, DMA_SIZE);
  if (dma("dma.superpage.from-device", EDU_TO_RAM, IOVA_SUPER + SUPER_CROSSING, 0, DMA_SIZE))
    check("dma.superpage.from-device", fsts_errors() == 0 && memcmp(phys, buf_b, DMA_SIZE) == 0,
          "fsts=0x%08x or data differs", fsts_errors());
}

static void test_faults(void) {
  u32 before = interrupt_count(FAULT_VECTOR);
  if (dma("fault.read-not-present", EDU_TO_DEVICE, IOVA_NP, 0, 64))
    expect_fault("fault.read-not-present", VTD_FAULT_REASON_READ_NOT_PERMITTED, IOVA_NP, true, before);

  /* The page just faulted becomes present: with CM = 1 the unit may hold the not-present entry. */
  memset(buf_np, 0, sizeof(buf_np));
  bool mapped = map_page(IOVA_NP, (u32)buf_np, PAGE_4K, ACCESS_READ_WRITE);
  if (mapped && dma("map.after-fault", EDU_TO_DEVICE, IOVA_A, 0, DMA_SIZE) &&
      dma("map.after-fault", EDU_TO_RAM, IOVA_NP, 0, DMA_SIZE))
    check("map.after-fault", fsts_errors() == 0 && memcmp(buf_np, buf_a, DMA_SIZE) == 0, "fsts=0x%08x or data differs",
          fsts_errors());

  /* Write to the read-only page first: QEMU does not check permissions on an IOTLB hit. */
  memset(buf_ro, 0xA5, sizeof(buf_ro));
  before = interrupt_count(FAULT_VECTOR);
  if (dma("fault.write-read-only", EDU_TO_RAM, IOVA_RO, 0, 64)) {
    expect_fault("fault.write-read-only", VTD_FAULT_REASON_WRITE_NOT_PERMITTED, IOVA_RO, false, before);
    bool untouched = true;
    for (u32 i = 0; i < sizeof(buf_ro); i++) untouched &= buf_ro[i] == 0xA5;
    check("fault.write-read-only.memory-unchanged", untouched, "the read-only page was written");
  }
  if (dma("dma.read-only.to-device", EDU_TO_DEVICE, IOVA_RO, 0, 64))
    check("dma.read-only.to-device", fsts_errors() == 0, "fsts=0x%08x", fsts_errors());

  u32 width = unit.mgaw < unit.aw_width ? unit.mgaw : unit.aw_width;
  u64 beyond = 1ull << width;
  info("fault.beyond-mgaw address 0x%llx", beyond);
  before = interrupt_count(FAULT_VECTOR);
  if (dma("fault.beyond-mgaw", EDU_TO_DEVICE, beyond, 0, 64))
    expect_fault("fault.beyond-mgaw", VTD_FAULT_REASON_ADDRESS_BEYOND_MGAW, beyond, true, before);
}

/*
 * With the option (ECAP.C = 0), the cleared entry's line is not flushed: does the device still
 * reach the unmapped page after the IOTLB invalidation? Then the late flush and invalidation.
 */
static void observe_unflushed_unmap(void) {
  u32 before = interrupt_count(FAULT_VECTOR);
  bool done = dma("flush.stale-entry", EDU_TO_DEVICE, IOVA_UNMAP, 0, 64);
  /* The unit records a fault before edu reports the DMA done. */
  bool faulted = done && (vtd_read32(VTD_REG_FSTS) & VTD_FSTS_PPF);
  bool stale = done && !faulted;
  if (faulted) wait_for_interrupt(FAULT_VECTOR, before);
  vtd_clear_faults();
  result_observed("flush.stale-entry", stale ? "OBSERVED" : "NOT-OBSERVED");
  check("flush.late", flush_page_entry(IOVA_UNMAP, PAGE_4K) && vtd_invalidate_iotlb_pages(DOMAIN_ID, IOVA_UNMAP, 0),
        "invalidation failed");
}

static void test_unmap(void) {
  if (dma("unmap.before", EDU_TO_DEVICE, IOVA_UNMAP, 0, 64))
    check("unmap.before", fsts_errors() == 0, "fsts=0x%08x", fsts_errors());
  bool skip = option_skip_flush && !unit.coherent;
  if (option_skip_flush && unit.coherent) info("flush.skip not applicable (ECAP.C = 1)");
  check("unmap.invalidate", unmap_page(IOVA_UNMAP, PAGE_4K, skip), "invalidation failed");
  if (skip) observe_unflushed_unmap();
  u32 before = interrupt_count(FAULT_VECTOR);
  if (dma("fault.after-unmap", EDU_TO_DEVICE, IOVA_UNMAP, 0, 64))
    expect_fault("fault.after-unmap", VTD_FAULT_REASON_READ_NOT_PERMITTED, IOVA_UNMAP, true, before);
}

static bool queue_drained(void) {
  u64 deadline = deadline_after_ms(VTD_POLL_TIMEOUT_MS);
  while (vtd_read32(VTD_REG_IQH) != vtd_read32(VTD_REG_IQT))
    if (deadline_passed(deadline)) return false;
  return true;
}

static void test_wait_descriptors(void) {
  if (!unit.queued) {
    info("qi.wait skipped (register-based invalidation)");
    return;
  }
  u32 waits = unit.counts.waits;
  bool ok = vtd_qi_submit(0, 0);
  check("qi.wait.sw", ok && unit.counts.waits == waits + 1 && queue_drained(), "status not written or queue not drained");

  vtd_write32(VTD_REG_IEDATA, COMPLETION_VECTOR);
  vtd_write32(VTD_REG_IEADDR, msi_address());
  vtd_write32(VTD_REG_IEUADDR, 0);
  vtd_write32(VTD_REG_IECTL, 0);
  u64 wait_if[2] = {FIELD_PREP(VTD_DESCRIPTOR_TYPE_LOW, VTD_DESCRIPTOR_TYPE_INVALIDATION_WAIT) | FIELD_PREP(VTD_WAIT_DESC_IF, 1), 0};
  u32 before = interrupt_count(COMPLETION_VECTOR);
  unit.counts.waits++;
  vtd_qi_post(wait_if, 1);
  u64 deadline = deadline_after_ms(VTD_POLL_TIMEOUT_MS);
  while (!(vtd_read32(VTD_REG_ICS) & VTD_ICS_IWC) && !deadline_passed(deadline)) {
  }
  u32 ics = vtd_read32(VTD_REG_ICS);
  check("qi.wait.if.iwc", (ics & VTD_ICS_IWC) && queue_drained(), "ics=0x%08x iqh=0x%x iqt=0x%x", ics,
        vtd_read32(VTD_REG_IQH), vtd_read32(VTD_REG_IQT));
  wait_for_interrupt(COMPLETION_VECTOR, before);
  u32 msis = interrupt_count(COMPLETION_VECTOR) - before, iectl = vtd_read32(VTD_REG_IECTL);
  check("qi.wait.if.msi", msis == 1 && iectl == 0, "completion MSIs %u (want 1) iectl=0x%08x", msis, iectl);

  /* A second completion while IWC is still set raises no interrupt. */
  before = interrupt_count(COMPLETION_VECTOR);
  unit.counts.waits++;
  vtd_qi_post(wait_if, 1);
  bool drained = queue_drained();
  u64 settle = deadline_after_ms(50);
  while (!deadline_passed(settle)) {
  }
  msis = interrupt_count(COMPLETION_VECTOR) - before;
  check("qi.wait.if.no-msi-while-iwc", drained && msis == 0, "completion MSIs %u (want 0), drained %u", msis, drained);

  vtd_write32(VTD_REG_ICS, (u32)VTD_ICS_IWC);
  ics = vtd_read32(VTD_REG_ICS);
  iectl = vtd_read32(VTD_REG_IECTL);
  check("qi.wait.if.clear", ics == 0 && iectl == 0, "ics=0x%08x iectl=0x%08x", ics, iectl);
  vtd_write32(VTD_REG_IECTL, (u32)VTD_EVENT_CONTROL_IM);
}

/* The benchmark workload: round trips between two buffers, through `src` and `dst` addresses. */
static void run_dma_rounds(u64 src, u64 dst) {
  if (option_dma_rounds == 0) return;
  fill(buf_a, sizeof(buf_a), 0x55);
  memset(buf_b, 0, sizeof(buf_b));
  u32 done = 0;
  while (done < option_dma_rounds && edu_dma(&edu, EDU_TO_DEVICE, src, 0, DMA_SIZE) &&
         edu_dma(&edu, EDU_TO_RAM, dst, 0, DMA_SIZE))
    done++;
  check("workload.dma-rounds", done == option_dma_rounds && fsts_errors() == 0 && memcmp(buf_a, buf_b, DMA_SIZE) == 0,
        "%u of %u rounds, fsts=0x%08x", done, option_dma_rounds, fsts_errors());
}

static void report_counts(void) {
  const struct vtd_counts *c = &unit.counts;
  info("count.context-cache global %u domain %u device %u", c->context_global, c->context_domain, c->context_device);
  info("count.iotlb global %u domain %u page %u", c->iotlb_global, c->iotlb_domain, c->iotlb_page);
  info("count.wait-descriptors %u", c->waits);
  info("count.write-buffer-flushes %u", c->write_buffer_flushes);
  info("count.table-flushes %u", c->table_flushes);
  platform("count.cache-lines-flushed %u (clflush %u)", c->cache_lines_flushed, cpu_has_clflush());
  info("count.cm-invalidations-skipped %u", c->cm_skipped);
  if (option_skip_flush) info("count.cache-flushes-skipped %u", c->flushes_skipped);
}

/* The legacy-mode translation checks (TTM = 00). */
static void legacy_translation(void) {
  tables_init(edu.pci);
  check("root.set", vtd_set_root_table(tables_root()), "root table not taken");
  bool superpages = superpages_possible();
  build_mappings(superpages);
  enable_translation();

  /* The context entry is still not present: the first DMA faults. */
  u32 before = interrupt_count(FAULT_VECTOR);
  if (dma("fault.context-not-present", EDU_TO_DEVICE, IOVA_A, 0, 64))
    expect_fault("fault.context-not-present", VTD_FAULT_REASON_CONTEXT_ENTRY_NOT_PRESENT, IOVA_A, true, before);
  install_context();
  test_translated();
  if (superpages) test_superpage();
  test_faults();
  test_unmap();
  run_dma_rounds(IOVA_A, IOVA_B);
}

_Noreturn void guest_main(u32 magic, const u32 *mbi);
_Noreturn void guest_main(u32 magic, const u32 *mbi) {
  console_init();
  arch_init();
  u64 start = clock_ticks();
  info("guest vtd-test 1");
  read_multiboot(magic, mbi);

  const struct dmar_unit *dmar_unit = find_edu() ? find_unit() : 0;
  if (dmar_unit) {
    vtd_probe((u32)dmar_unit->base);
    report_unit();
    test_untranslated();
    vtd_clear_faults();
  }
  if (dmar_unit && option_translation_off) {
    run_dma_rounds((u32)buf_a, (u32)buf_b);
  } else if (dmar_unit) {
    bool scalable = option_scalable && sm_offered();
    unit.queue_wide = scalable; /* scalable mode's queue: 256-bit descriptors */
    setup_invalidation();
    setup_fault_event();
    /* As Linux: interrupt remapping (which needs the queue) before DMA remapping. */
    interrupt_remapping = ir_run(dmar_unit, &edu, (struct ir_options){.skip_iec_invalidation = option_skip_iec, .fault_vector = FAULT_VECTOR});
    if (scalable) sm_run(&edu, FAULT_VECTOR);
    else legacy_translation();
    test_wait_descriptors();
    report_counts();
  }
  platform("elapsed-ms %u", ticks_to_ms(clock_ticks() - start));
  info("summary passed %u failed %u", results_passed(), results_failed());
  guest_exit(results_failed() ? 1 : 0);
}
