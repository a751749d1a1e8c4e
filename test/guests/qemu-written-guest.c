/*
 * A multiboot guest written the way guests for QEMU's q35 + intel-iommu + edu are: it trusts the
 * multiboot information's mem_lower/mem_upper, drives PCI configuration mechanism #1 with the
 * register's low bits in CONFIG_ADDRESS and byte/word accesses to 0xCFC-0xCFF, and uses edu's
 * BAR0 as the firmware left it (it never writes a BAR or the command register before using it).
 * test/qemu-written-guest.test.ts boots it on QEMU 10.0 and in v86 and compares the transcripts:
 * RESULT lines must be equal, PLATFORM lines (addresses a firmware chose) may differ.
 * Built with gcc -m32 -ffreestanding (test/support/multiboot-images.ts).
 */
#include <stdint.h>

#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11e8
#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA 0xCFC
#define ENABLE 0x80000000u

/* Header flags: bit 0 page-align modules, bit 1 memory information wanted (mem_* at least). */
#define MB_HEADER_FLAGS 3u
__attribute__((section(".multiboot"), used, aligned(4)))
static const uint32_t multiboot_header[3] = {0x1BADB002u, MB_HEADER_FLAGS, (uint32_t)-(0x1BADB002u + MB_HEADER_FLAGS)};

void guest_main(uint32_t magic, uint32_t info);

__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov $stack_top, %esp\n"
    "  push %ebx\n"
    "  push %eax\n"
    "  call guest_main\n"
    "1: cli\n hlt\n jmp 1b\n"
    ".bss\n"
    ".align 16\n"
    "stack: .skip 8192\n"
    "stack_top:\n"
    ".text\n");

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t mmio_read32(uint32_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint32_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

/* COM1. QEMU keeps THRE clear while its host side is busy and drops what the guest writes then. */
static void wait_uart(uint8_t bit) {
  for (uint32_t i = 0; i < 20000000 && !(inb(0x3F8 + 5) & bit); i++) {}
}
static void putc(char c) {
  wait_uart(0x20); /* LSR.THRE */
  outb(0x3F8, (uint8_t)c);
}
static void puts(const char *s) {
  while (*s) putc(*s++);
}
static void puthex(uint32_t v) {
  puts("0x");
  for (int i = 28; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}
static void emit(const char *kind, const char *name, uint32_t v) {
  puts(kind);
  putc(' ');
  puts(name);
  putc('=');
  puthex(v);
  putc('\n');
}
static void result(const char *name, uint32_t v) { emit("RESULT", name, v); }
static void platform(const char *name, uint32_t v) { emit("PLATFORM", name, v); }
/* Where the platform departs from QEMU on purpose (docs/conformance.md): each side's value is checked by the test. */
static void info(const char *name, uint32_t v) { emit("INFO", name, v); }
static void exit_guest(uint8_t code) {
  wait_uart(0x40); /* LSR.TEMT: everything sent before QEMU exits */
  outb(0xF4, code);
  for (;;) __asm__ volatile("cli; hlt");
}

/* Multiboot 0.6.96 §3.3: the information structure's fields this guest reads. */
struct multiboot_info {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length, mmap_addr;
};

static void memory_information(uint32_t magic, const struct multiboot_info *mbi) {
  result("mb_magic", magic);
  result("mb_flag_mem", mbi->flags & 1);
  result("mb_flag_mmap", (mbi->flags >> 6) & 1);
  if (mbi->flags & 1) {
    /* QEMU: 639 (SeaBIOS's EBDA takes the last KiB); v86 without firmware has no EBDA: 640. */
    platform("mb_mem_lower_kib", mbi->mem_lower);
    result("mb_mem_lower_in_range", mbi->mem_lower >= 512 && mbi->mem_lower <= 640);
    /* Exact value depends on how much RAM below the first hole the loader counts. */
    platform("mb_mem_upper_kib", mbi->mem_upper);
    /* Both loaders must report RAM from 1 MiB up to near the end of the machine's 128 MiB (QEMU's default). */
    result("mb_mem_upper_at_least_120mib", mbi->mem_upper >= 120 * 1024);
    result("mb_mem_upper_within_ram", mbi->mem_upper <= 127 * 1024);
  }
  if (mbi->flags & (1 << 6)) {
    /* The mem_* fields and the map must agree: the available range starting at 1 MiB. */
    uint32_t upper_end = 0;
    for (uint32_t at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length;) {
      const uint32_t *e = (const uint32_t *)at;
      if (e[1] == 0x100000 && e[2] == 0 && e[5] == 1) upper_end = e[1] + e[3];
      at += e[0] + 4;
    }
    result("mb_mmap_has_1mib_range", upper_end != 0);
    uint32_t lower_end = 0;
    for (uint32_t at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length;) {
      const uint32_t *e = (const uint32_t *)at;
      if (e[1] == 0 && e[2] == 0 && e[5] == 1) lower_end = e[3];
      at += e[0] + 4;
    }
    if (mbi->flags & 1) result("mb_mem_lower_matches_mmap", mbi->mem_lower * 1024 <= lower_end);
    if (mbi->flags & 1) result("mb_mem_upper_matches_mmap", mbi->mem_upper * 1024 + 0x100000 <= upper_end);
  }
}

static uint32_t address(int dev, int reg) { return ENABLE | (uint32_t)dev << 11 | (uint32_t)reg; }

static int find_edu(void) {
  for (int dev = 0; dev < 32; dev++) {
    outl(CONFIG_ADDRESS, address(dev, 0));
    if (inl(CONFIG_DATA) == ((uint32_t)EDU_DEVICE << 16 | EDU_VENDOR)) return dev;
  }
  return -1;
}

static void configuration_mechanism(int dev) {
  static const char *const dword_names[4] = {"cfg_dword_low0", "cfg_dword_low1", "cfg_dword_low2", "cfg_dword_low3"};
  static const char *const readback_names[4] = {"cfg_address_low0", "cfg_address_low1", "cfg_address_low2", "cfg_address_low3"};
  static const char *const byte_names[4][4] = {
      {"cfg_b_low0_cfc", "cfg_b_low0_cfd", "cfg_b_low0_cfe", "cfg_b_low0_cff"},
      {"cfg_b_low1_cfc", "cfg_b_low1_cfd", "cfg_b_low1_cfe", "cfg_b_low1_cff"},
      {"cfg_b_low2_cfc", "cfg_b_low2_cfd", "cfg_b_low2_cfe", "cfg_b_low2_cff"},
      {"cfg_b_low3_cfc", "cfg_b_low3_cfd", "cfg_b_low3_cfe", "cfg_b_low3_cff"}};
  static const char *const word_names[4][2] = {
      {"cfg_w_low0_cfc", "cfg_w_low0_cfe"},
      {"cfg_w_low1_cfc", "cfg_w_low1_cfe"},
      {"cfg_w_low2_cfc", "cfg_w_low2_cfe"},
      {"cfg_w_low3_cfc", "cfg_w_low3_cfe"}};
  /* Register 0x00 (vendor, device) of edu, with CONFIG_ADDRESS bits 1:0 = 0..3. */
  for (int low = 0; low < 4; low++) {
    outl(CONFIG_ADDRESS, address(dev, low));
    result(readback_names[low], inl(CONFIG_ADDRESS) & ~((uint32_t)0xFF << 11) /* the slot differs */);
    result(dword_names[low], inl(CONFIG_DATA));
    for (int n = 0; n < 4; n++) result(byte_names[low][n], inb(CONFIG_DATA + n));
    for (int n = 0; n < 2; n++) result(word_names[low][n], inw(CONFIG_DATA + 2 * n));
  }
  /* Word and dword reads at an odd port of CONFIG_DATA. */
  outl(CONFIG_ADDRESS, address(dev, 0));
  result("cfg_w_cfd", inw(CONFIG_DATA + 1));
  result("cfg_w_cff", inw(CONFIG_DATA + 3));
  result("cfg_d_cfe", inl(CONFIG_DATA + 2));
  /* A misaligned word write whose bytes would reach the cache line size register (0x0C). */
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  outb(CONFIG_DATA, 0x00);
  outl(CONFIG_ADDRESS, address(dev, 0x08) | 3);
  outw(CONFIG_DATA + 1, 0x2020);
  outl(CONFIG_ADDRESS, address(dev, 0x08));
  outw(CONFIG_DATA + 3, 0x4040);
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  result("cfg_cls_after_misaligned_writes", inb(CONFIG_DATA));
  /* The class code dword (0x08) through byte reads, as a BIOS-style config_read8 does. */
  uint32_t class_bytes = 0;
  for (int n = 0; n < 4; n++) {
    outl(CONFIG_ADDRESS, address(dev, 0x08));
    class_bytes |= (uint32_t)inb(CONFIG_DATA + n) << (8 * n);
  }
  result("cfg_class_by_bytes", class_bytes);
  /* Enable bit clear: no configuration cycle. */
  outl(CONFIG_ADDRESS, address(dev, 0) & ~ENABLE);
  result("cfg_disabled_dword", inl(CONFIG_DATA));
  result("cfg_disabled_byte", inb(CONFIG_DATA + 1));
  result("cfg_disabled_readback", inl(CONFIG_ADDRESS) & ~((uint32_t)0xFF << 11));
  /* A slot with no function, and bus 1 (none). */
  outl(CONFIG_ADDRESS, address(0x1d, 0));
  result("cfg_empty_slot", inl(CONFIG_DATA));
  outl(CONFIG_ADDRESS, address(dev, 0) | 1 << 16);
  result("cfg_bus1", inl(CONFIG_DATA));
  /* CONFIG_ADDRESS is a dword register: narrower accesses to 0xCF8, 0xCFA, 0xCFB (0xCF9 is the reset control register). */
  outl(CONFIG_ADDRESS, address(dev, 0x08) | 2);
  outb(CONFIG_ADDRESS, 0x44);
  outb(CONFIG_ADDRESS + 2, 0x01);
  outw(CONFIG_ADDRESS + 2, 0x0002);
  result("cfg_address_after_narrow_writes", inl(CONFIG_ADDRESS) & ~((uint32_t)0xFF << 11));
  info("cfg_address_byte_cf8", inb(CONFIG_ADDRESS));
  info("cfg_address_byte_cfa", inb(CONFIG_ADDRESS + 2));
  info("cfg_address_byte_cfb", inb(CONFIG_ADDRESS + 3));
  info("cfg_address_word_cf8", inw(CONFIG_ADDRESS));
  info("cfg_address_word_cfa", inw(CONFIG_ADDRESS + 2));
  /* The end of the 256-byte space: an access reaching past register 0xFF. */
  outl(CONFIG_ADDRESS, address(dev, 0xFC) | 3);
  result("cfg_dword_at_ff", inl(CONFIG_DATA));
  result("cfg_word_at_ff", inw(CONFIG_DATA));
  result("cfg_byte_at_ff", inb(CONFIG_DATA));

  /* Writes: the cache line size register (0x0C, all bits writable on both) by byte and word. */
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  outb(CONFIG_DATA, 0x10);
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  result("cfg_cls_after_byte_write", inb(CONFIG_DATA));
  /* Byte write at 0xCFC with CONFIG_ADDRESS bits 1:0 = 0: register 0x0C again. */
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  outw(CONFIG_DATA, 0x0008);
  outl(CONFIG_ADDRESS, address(dev, 0x0C));
  result("cfg_cls_after_word_write", inb(CONFIG_DATA));
  /* The interrupt line (0x3C) through 0xCFC with bits 1:0 = 0 and through a CONFIG_ADDRESS with low bits. */
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  uint8_t line = inb(CONFIG_DATA);
  outb(CONFIG_DATA, 0x5A);
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  result("cfg_line_after_write", inb(CONFIG_DATA));
  outl(CONFIG_ADDRESS, address(dev, 0x3C) | 2);
  outb(CONFIG_DATA + 2, 0xA5); /* 0x3C | 2 | 2 */
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  result("cfg_dword_3c_after_low_write", inl(CONFIG_DATA) & 0xFFFF);
  outl(CONFIG_ADDRESS, address(dev, 0x3C) | 1);
  outb(CONFIG_DATA, 0x77); /* register 0x3D, the interrupt pin: read-only */
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  result("cfg_pin_after_write", inb(CONFIG_DATA + 1));
  outl(CONFIG_ADDRESS, address(dev, 0x3C) | 1);
  outb(CONFIG_DATA + 3, 0x66); /* 0x3D | 3 = 0x3F: max latency, read-only (0) */
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  result("cfg_dword_3c_after_pin_writes", inl(CONFIG_DATA) & 0xFFFFFF00);
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  outb(CONFIG_DATA, line);
}

static void identity(int dev) {
  static const struct {
    uint8_t reg;
    const char *name;
  } regs[] = {{0x08, "edu_class_revision"}, {0x0C, "edu_header_dword"}, {0x2C, "edu_subsystem"}, {0x34, "edu_capabilities_pointer"}};
  for (unsigned i = 0; i < sizeof regs / sizeof regs[0]; i++) {
    outl(CONFIG_ADDRESS, address(dev, regs[i].reg));
    uint32_t v = inl(CONFIG_DATA);
    if (regs[i].reg == 0x0C) v &= 0xFFFFFF00; /* cache line size was written above */
    result(regs[i].name, v);
  }
  outl(CONFIG_ADDRESS, address(dev, 0x3C));
  uint32_t v = inl(CONFIG_DATA);
  result("edu_interrupt_pin", (v >> 8) & 0xFF);
  platform("edu_interrupt_line", v & 0xFF);
  outl(CONFIG_ADDRESS, address(dev, 0x04));
  v = inl(CONFIG_DATA);
  result("edu_status_at_boot", v >> 16);
}

static void bar_as_left(int dev) {
  outl(CONFIG_ADDRESS, address(dev, 0x04));
  result("edu_command_at_boot", inl(CONFIG_DATA) & 0xFFFF);
  outl(CONFIG_ADDRESS, address(dev, 0x10));
  uint32_t bar = inl(CONFIG_DATA);
  platform("edu_bar0", bar);
  result("edu_bar0_type", bar & 0xF);
  result("edu_bar0_assigned", (bar & ~0xFu) != 0 && (bar & 0xFFFFF) == 0);
  uint32_t base = bar & ~0xFu;
  if (base == 0) return;
  /* edu: 0x00 identification, 0x04 liveness (reads back the complement). Nothing programmed. */
  result("edu_id", mmio_read32(base));
  mmio_write32(base + 4, 0x12345678);
  result("edu_liveness", mmio_read32(base + 4));
  mmio_write32(base + 8, 5); /* factorial */
  for (int i = 0; i < 1000000 && (mmio_read32(base + 0x20) & 1); i++) {}
  result("edu_factorial_5", mmio_read32(base + 8));
}

void guest_main(uint32_t magic, uint32_t info) {
  puts("guest: qemu-written guest\n");
  memory_information(magic, (const struct multiboot_info *)info);
  int dev = find_edu();
  result("edu_found", dev >= 0);
  if (dev < 0) exit_guest(1);
  platform("edu_slot", (uint32_t)dev);
  bar_as_left(dev);
  configuration_mechanism(dev);
  identity(dev);
  puts("guest: done\n");
  exit_guest(0);
}
