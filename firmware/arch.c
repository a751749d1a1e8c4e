/* CPU and platform setup: descriptor tables, exceptions, interrupts, PIT clock, LAPIC. */
#include "arch.h"
#include "console.h"

#define LAPIC_BASE 0xFEE00000u
#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_SPURIOUS_VECTOR 0xFF

#define PIT_TICKS_PER_MS 1193u

void *memset(void *d, int c, size_t n) {
  u8 *p = d;
  while (n--) *p++ = (u8)c;
  return d;
}

void *memcpy(void *d, const void *s, size_t n) {
  u8 *p = d;
  const u8 *q = s;
  while (n--) *p++ = *q++;
  return d;
}

int memcmp(const void *a, const void *b, size_t n) {
  const u8 *p = a, *q = b;
  for (; n; n--, p++, q++)
    if (*p != *q) return *p < *q ? -1 : 1;
  return 0;
}

/* ---- descriptor tables ---- */

struct __attribute__((packed)) table_descriptor {
  u16 limit;
  u32 base;
};

static const u64 gdt[3] __attribute__((aligned(8))) = {
    0,
    0x00CF9A000000FFFFull, /* 0x08: flat 32-bit code */
    0x00CF92000000FFFFull, /* 0x10: flat data */
};

static u64 idt[256] __attribute__((aligned(8)));

extern const u8 vector_stubs[];
void gdt_load(const struct table_descriptor *d);
void idt_load(const struct table_descriptor *d);

static void tables_init(void) {
  static struct table_descriptor gdtr, idtr;
  gdtr.limit = sizeof(gdt) - 1;
  gdtr.base = (u32)gdt;
  gdt_load(&gdtr);
  for (u32 v = 0; v < 256; v++) {
    u32 handler = (u32)vector_stubs + 16 * v;
    /* 32-bit interrupt gate, DPL 0, present, selector 0x08. */
    idt[v] = (handler & 0xFFFFu) | (0x08u << 16) | ((u64)0x8E00u << 32) | ((u64)(handler & 0xFFFF0000u) << 32);
  }
  idtr.limit = sizeof(idt) - 1;
  idtr.base = (u32)idt;
  idt_load(&idtr);
}

struct exception_frame {
  u32 edi, esi, ebp, esp, ebx, edx, ecx, eax;
  u32 vector, error, eip, cs, eflags;
};

extern const u8 clflush_probe_insn[], clflush_probe_resume[];
u32 clflush_probe(const void *p);

void exception_handler(struct exception_frame *f);
void exception_handler(struct exception_frame *f) {
  if (f->vector == 6 && f->eip == (u32)clflush_probe_insn) {
    f->eip = (u32)clflush_probe_resume;
    f->eax = 0;
    return;
  }
  console_printf("FATAL exception vector=%u error=0x%x eip=0x%08x\n", f->vector, f->error, f->eip);
  result_fail("guest.exception", "vector=%u error=0x%x eip=0x%08x", f->vector, f->error, f->eip);
  guest_exit(2);
}

/* ---- interrupts ---- */

static volatile u32 interrupt_counts[256];

void interrupt_handler(u32 vector);
void interrupt_handler(u32 vector) {
  interrupt_counts[vector & 0xFF]++;
  if (vector != LAPIC_SPURIOUS_VECTOR) mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
}

u32 interrupt_count(u8 vector) {
  return interrupt_counts[vector];
}

bool interrupt_wait(u8 vector, u32 before, u32 ms) {
  u64 deadline = deadline_after_ms(ms);
  while (interrupt_count(vector) == before && !deadline_passed(deadline)) {
  }
  return interrupt_count(vector) != before;
}

u32 lapic_id(void) {
  return mmio_read32(LAPIC_BASE + LAPIC_ID) >> 24;
}

static void lapic_init(void) {
  mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR);
  mmio_write32(LAPIC_BASE + LAPIC_TPR, 0);
  mmio_write32(LAPIC_BASE + LAPIC_LVT_TIMER, 1u << 16);
  mmio_write32(LAPIC_BASE + LAPIC_LVT_ERROR, 1u << 16);
}

static void pic_mask_all(void) {
  outb(0x21, 0xFF);
  outb(0xA1, 0xFF);
}

/* ---- PIT channel 0 as a free-running counter (mode 2, reload 65536, IRQ masked) ---- */

static u16 pit_last;
static u64 pit_total;

static u16 pit_read(void) {
  outb(0x43, 0x00); /* latch channel 0 */
  u8 lo = inb(0x40);
  u8 hi = inb(0x40);
  return (u16)(lo | (hi << 8));
}

static void pit_init(void) {
  outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
  outb(0x40, 0);
  outb(0x40, 0);
  pit_last = pit_read();
}

u64 clock_ticks(void) {
  u16 now = pit_read();
  pit_total += (u16)(pit_last - now);
  pit_last = now;
  return pit_total;
}

u64 deadline_after_ms(u32 ms) {
  return clock_ticks() + (u64)ms * PIT_TICKS_PER_MS;
}

bool deadline_passed(u64 deadline) {
  return clock_ticks() >= deadline;
}

u32 ticks_to_ms(u64 ticks) {
  return (u32)ticks / PIT_TICKS_PER_MS; /* runs are far shorter than 2^32 ticks (an hour) */
}

/* ---- CPU features ---- */

static bool cpuid_clflush, has_clflush;
static u32 clflush_line = 64;

static void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

bool cpu_clflush_in_cpuid(void) {
  return cpuid_clflush;
}

bool cpu_has_clflush(void) {
  return has_clflush;
}

u32 cache_flush_range(const volatile void *p, u32 n) {
  if (!has_clflush) {
    __asm__ volatile("wbinvd" : : : "memory");
    return 1;
  }
  u32 start = (u32)p & ~(clflush_line - 1);
  u32 end = (u32)p + n;
  u32 lines = 0;
  memory_fence();
  for (u32 a = start; a < end; a += clflush_line, lines++) __asm__ volatile("clflush (%0)" : : "r"(a) : "memory");
  memory_fence();
  return lines;
}

static void fpu_init(void) {
  u32 cr0;
  __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
  cr0 &= ~((1u << 2) | (1u << 3)); /* EM, TS off: MMX usable */
  cr0 |= 1u << 1;                  /* MP */
  __asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
  __asm__ volatile("fninit");
}

void arch_init(void) {
  tables_init();
  fpu_init();
  /* From here on an exception prints its vector and ends the run. */
  u32 a, b, c, d;
  cpuid(1, &a, &b, &c, &d);
  cpuid_clflush = (d >> 19) & 1;
  if (cpuid_clflush && ((b >> 8) & 0xFF)) clflush_line = ((b >> 8) & 0xFF) * 8;
  /* Like Linux, flush with CLFLUSH; probe it, since an emulator may run it without CPUID.CLFSH. */
  has_clflush = clflush_probe(&clflush_line);
  pic_mask_all();
  pit_init();
  lapic_init();
  __asm__ volatile("sti");
}

_Noreturn void guest_exit(u8 code) {
  outb(0xF4, code);
  for (;;) __asm__ volatile("cli; hlt");
}
