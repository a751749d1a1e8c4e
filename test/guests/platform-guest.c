/*
 * A tiny multiboot guest for test/v86-platform.test.ts (built at test time with gcc -m32).
 * It checks the v86 platform glue from inside: the VT-d unit's MMIO block, the edu device's
 * registers, DMA through the IOMMU with translation off, MSI and INTx delivery (also under
 * the JIT), CLFLUSH, and the exit port. Lines starting "RESULT" are parsed by the test.
 */
#include <stdint.h>

#define VTD_BASE 0xFED90000u
#define EDU_SLOT 4
#define MSI_VECTOR 0x40
#define PIC_BASE 0x20
#define STORM 300
#define TIMER_VECTOR 0x41

__attribute__((section(".multiboot"), used, aligned(4)))
static const uint32_t multiboot_header[3] = {0x1BADB002u, 2 /* memory map wanted */, (uint32_t)-(0x1BADB002 + 2)};

void guest_main(uint32_t multiboot_info);
void exception_handler(uint32_t vector);
void msi_handler(void);
void intx_handler(void);
void timer_handler(void);

__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov $stack_top, %esp\n"
    "  push %ebx\n"
    "  call guest_main\n"
    "1: cli\n hlt\n jmp 1b\n"
    "exc_common:\n"
    "  call exception_handler\n"
    "2: cli\n hlt\n jmp 2b\n"
    ".align 16\n"
    ".globl exc_stubs\n"
    "exc_stubs:\n"
    ".set vec, 0\n"
    ".rept 32\n"
    "  .align 16\n"
    "  push $vec\n"
    "  jmp exc_common\n"
    "  .set vec, vec + 1\n"
    ".endr\n"
    ".globl msi_stub\n"
    "msi_stub:\n"
    "  pusha\n cld\n call msi_handler\n popa\n iret\n"
    ".globl timer_stub\n"
    "timer_stub:\n"
    "  pusha\n cld\n call timer_handler\n popa\n iret\n"
    ".globl intx_stub\n"
    "intx_stub:\n"
    "  pusha\n cld\n call intx_handler\n popa\n iret\n"
    ".bss\n"
    ".align 16\n"
    "stack: .skip 16384\n"
    "stack_top:\n"
    ".text\n");

extern char exc_stubs[], msi_stub[], intx_stub[], timer_stub[];

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t mmio_read32(uint32_t a) { return *(volatile uint32_t *)a; }
static inline uint8_t mmio_read8(uint32_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write32(uint32_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

static void putc(char c) { outb(0x3F8, (uint8_t)c); }
static void puts(const char *s) {
  while (*s) putc(*s++);
}
static void puthex(uint32_t v) {
  puts("0x");
  for (int i = 28; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}
static void line(const char *name, uint32_t v) {
  puts("RESULT ");
  puts(name);
  putc('=');
  puthex(v);
  putc('\n');
}
static void exit_guest(uint8_t code) {
  outb(0xF4, code);
  for (;;) __asm__ volatile("cli; hlt");
}
static void check(int ok, const char *what, uint8_t code) {
  if (ok) return;
  puts("FAIL ");
  puts(what);
  putc('\n');
  exit_guest(code);
}

/* Descriptor tables: flat 4 GiB code 0x08 and data 0x10; interrupt gates to the stubs. */
static uint64_t gdt[3] = {0, 0x00CF9A000000FFFFull, 0x00CF92000000FFFFull};
static uint64_t idt[256];
static struct __attribute__((packed)) {
  uint16_t limit;
  uint32_t base;
} gdtr, idtr;

static void set_gate(int vector, void *handler) {
  uint32_t h = (uint32_t)handler;
  idt[vector] = (uint64_t)(h & 0xFFFF) | (0x08ull << 16) | (0x8Eull << 40) | ((uint64_t)(h >> 16) << 48);
}

static void setup_cpu(void) {
  gdtr.limit = sizeof(gdt) - 1;
  gdtr.base = (uint32_t)gdt;
  __asm__ volatile(
      "lgdt %0\n"
      "ljmp $0x08, $1f\n"
      "1: mov $0x10, %%ax\n mov %%ax, %%ds\n mov %%ax, %%es\n mov %%ax, %%ss\n mov %%ax, %%fs\n mov %%ax, %%gs\n" ::"m"(gdtr)
      : "eax", "memory");
  for (int i = 0; i < 32; i++) set_gate(i, exc_stubs + 16 * i);
  set_gate(MSI_VECTOR, msi_stub);
  idtr.limit = sizeof(idt) - 1;
  idtr.base = (uint32_t)idt;
  __asm__ volatile("lidt %0" ::"m"(idtr));
}

void exception_handler(uint32_t vector) {
  puts("EXCEPTION ");
  puthex(vector);
  putc('\n');
  exit_guest(0x80 | vector);
}

/* PCI configuration mechanism #1, bus 0. */
static uint32_t pci_read32(int dev, int reg) {
  outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC));
  return inl(0xCFC);
}
static void pci_write32(int dev, int reg, uint32_t v) {
  outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC));
  outl(0xCFC, v);
}
static void pci_write16(int dev, int reg, uint16_t v) {
  outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC));
  outw(0xCFC + (reg & 2), v);
}

static uint32_t edu;
static volatile uint32_t msi_count, intx_count, timer_count;

void msi_handler(void) {
  msi_count++;
  mmio_write32(edu + 0x64, mmio_read32(edu + 0x24));
  mmio_write32(0xFEE000B0, 0); /* LAPIC EOI */
}

void intx_handler(void) {
  intx_count++;
  mmio_write32(edu + 0x64, mmio_read32(edu + 0x24));
  outb(0xA0, 0x20);
  outb(0x20, 0x20);
}

void timer_handler(void) {
  timer_count++;
  mmio_write32(0xFEE000B0, 0);
}

static int wait_change(volatile uint32_t *counter, uint32_t before) {
  for (uint32_t spin = 0; spin < 50000000u; spin++) {
    if (*counter != before) return 1;
    __asm__ volatile("pause");
  }
  return 0;
}

static void wait_dma(void) {
  uint32_t spin = 0;
  while (mmio_read32(edu + 0x98) & 1) check(++spin < 50000000u, "dma completion", 11);
}

static void pic_init(void) {
  outb(0x20, 0x11);
  outb(0xA0, 0x11);
  outb(0x21, PIC_BASE);
  outb(0xA1, PIC_BASE + 8);
  outb(0x21, 4);
  outb(0xA1, 2);
  outb(0x21, 1);
  outb(0xA1, 1);
  outb(0x21, 0xFF);
  outb(0xA1, 0xFF);
}

static uint8_t src_buf[256] __attribute__((aligned(64)));
static uint8_t dst_buf[256] __attribute__((aligned(64)));

/* 1 if the multiboot memory map marks [0xE0000, 0x100000) reserved (the ACPI tables live there). */
static uint32_t acpi_area_reserved(uint32_t info) {
  const uint32_t *mbi = (const uint32_t *)info;
  if (!(mbi[0] & (1 << 6))) return 0;
  for (uint32_t at = mbi[12]; at < mbi[12] + mbi[11]; at += *(const uint32_t *)at + 4) {
    const uint32_t *e = (const uint32_t *)at;
    if (e[1] == 0xE0000 && e[2] == 0 && e[3] == 0x20000 && e[5] == 2) return 1;
  }
  return 0;
}

void guest_main(uint32_t multiboot_info) {
  setup_cpu();
  pic_init();
  puts("guest: started\n");
  line("acpi_area_reserved", acpi_area_reserved(multiboot_info));
  line("rsdp_signature", *(volatile uint32_t *)0xE0000); /* "RSD " */

  /* The VT-d unit. */
  line("ver", mmio_read32(VTD_BASE + 0x00));
  line("ver8", mmio_read8(VTD_BASE + 0x00));
  line("cap_lo", mmio_read32(VTD_BASE + 0x08));
  line("cap_hi", mmio_read32(VTD_BASE + 0x0C));
  line("ecap_lo", mmio_read32(VTD_BASE + 0x10));
  line("gsts", mmio_read32(VTD_BASE + 0x1C));
  line("below_unit", mmio_read32(0xFED80000));
  line("past_page", mmio_read32(VTD_BASE + 0x1000));
  mmio_write32(VTD_BASE + 0x40, 0xFEE00000); /* FEADDR */
  mmio_write32(VTD_BASE + 0x3C, 0x00000041); /* FEDATA */
  line("feaddr", mmio_read32(VTD_BASE + 0x40));
  line("fedata", mmio_read32(VTD_BASE + 0x3C));

  /* The edu device on 00:04.0. */
  uint32_t id = pci_read32(EDU_SLOT, 0x00);
  line("edu_pci_id", id);
  check(id == 0x11E81234u, "edu vendor/device", 2);
  edu = pci_read32(EDU_SLOT, 0x10) & ~0xFu;
  line("edu_bar0", edu);
  pci_write32(EDU_SLOT, 0x04, 0x0006); /* memory space + bus master, as one 32-bit write */
  line("edu_command", pci_read32(EDU_SLOT, 0x04) & 0xFFFF);
  line("edu_irq_line", pci_read32(EDU_SLOT, 0x3C) & 0xFF);
  line("edu_id", mmio_read32(edu + 0x00));
  mmio_write32(edu + 0x04, 0x12345678);
  line("edu_liveness", mmio_read32(edu + 0x04));
  mmio_write32(edu + 0x08, 10);
  while (mmio_read32(edu + 0x20) & 1) {
  }
  line("edu_factorial", mmio_read32(edu + 0x08));

  /* DMA RAM -> device -> RAM, translation off (identity). */
  for (int i = 0; i < 256; i++) src_buf[i] = (uint8_t)(i * 7 + 3);
  line("src_addr", (uint32_t)src_buf);
  line("dst_addr", (uint32_t)dst_buf);
  mmio_write32(edu + 0x80, (uint32_t)src_buf);
  mmio_write32(edu + 0x88, 0x40000);
  mmio_write32(edu + 0x90, 256);
  mmio_write32(edu + 0x98, 1);
  wait_dma();

  /* MSI: 64-bit capability at 0x40, vector MSI_VECTOR. */
  pci_write32(EDU_SLOT, 0x44, 0xFEE00000);
  pci_write32(EDU_SLOT, 0x48, 0);
  pci_write16(EDU_SLOT, 0x4C, MSI_VECTOR);
  pci_write16(EDU_SLOT, 0x42, 1);
  mmio_write32(0xFEE000F0, 0x1FF); /* LAPIC: software enable, spurious vector 0xFF */
  mmio_write32(0xFEE00080, 0);     /* TPR */
  __asm__ volatile("sti");
  mmio_write32(edu + 0x80, 0x40000);
  mmio_write32(edu + 0x88, (uint32_t)dst_buf);
  mmio_write32(edu + 0x90, 256);
  uint32_t before = msi_count;
  mmio_write32(edu + 0x98, 1 | 2 | 4);
  check(wait_change(&msi_count, before), "dma msi", 12);
  int same = 1;
  for (int i = 0; i < 256; i++) same &= dst_buf[i] == src_buf[i];
  line("dma_equal", same);
  check(same, "dma bytes", 13);

  /* An MSI storm: raise, handler acknowledges, many times (the JIT compiles this loop). */
  for (int i = 0; i < STORM; i++) {
    before = msi_count;
    mmio_write32(edu + 0x60, 1);
    check(wait_change(&msi_count, before), "storm msi", 14);
  }
  line("msi_count", msi_count);

  /* HLT right after an MMIO write that queued work (no interrupt) waits for a real interrupt. */
  set_gate(TIMER_VECTOR, timer_stub);
  mmio_write32(0xFEE003E0, 0xB);          /* LAPIC timer: divide by 1 */
  mmio_write32(0xFEE00320, TIMER_VECTOR); /* one-shot, unmasked */
  __asm__ volatile("cli");
  mmio_write32(edu + 0x20, 0);            /* no interrupt when the factorial is done */
  mmio_write32(edu + 0x08, 5);            /* work for the next safe point */
  mmio_write32(0xFEE00380, 1000000);      /* start the timer */
  __asm__ volatile("sti; hlt");           /* the timer cannot fire between the two */
  line("hlt_woken_by_timer", timer_count);
  mmio_write32(0xFEE00320, 0x10000 | TIMER_VECTOR); /* mask the timer */

  /* INTx through the PIIX3 routing and the PIC, with MSI disabled. */
  uint32_t irq = pci_read32(EDU_SLOT, 0x3C) & 0xFF;
  pci_write16(EDU_SLOT, 0x42, 0);
  set_gate(PIC_BASE + irq, intx_stub);
  outb(0x21, (uint8_t)~(1 << 2));
  outb(0xA1, (uint8_t)~(1 << (irq - 8)));
  for (int i = 0; i < 100; i++) {
    before = intx_count;
    mmio_write32(edu + 0x60, 1);
    check(wait_change(&intx_count, before), "intx", 15);
  }
  line("intx_count", intx_count);

  /* CLFLUSH: first interpreted, then JIT-compiled. */
  for (uint32_t i = 0; i < 100000; i++) __asm__ volatile("clflush (%0)" ::"r"(&src_buf[(i & 3) * 64]) : "memory");
  puts("guest: clflush ok\n");

  puts("guest: done\n");
  exit_guest(0);
}
