/* COM1 output, a small printf (%s %c %d %u %x %p, width, '0' flag, 'll'), transcript lines. */
#include <stdarg.h>

#include "console.h"

#define COM1 0x3F8

static u32 passed, failed;

void console_init(void) {
  outb(COM1 + 1, 0x00); /* no interrupts */
  outb(COM1 + 3, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01); /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0xC7); /* FIFO on, cleared */
  outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void console_putc(char c) {
  /*
   * Bounded wait for the transmitter. An emulated UART is usually ready at once, but QEMU keeps
   * THRE clear while its host side is busy (a loaded machine): 100k polls once lost a character.
   */
  for (u32 i = 0; i < 20000000 && !(inb(COM1 + 5) & 0x20); i++) {
  }
  outb(COM1, (u8)c);
}

static void put_number(u64 v, u32 base, int width, char pad, bool negative) {
  char buf[24];
  int n = 0;
  do {
    u32 digit;
    if (base == 16) {
      digit = (u32)(v & 15);
      v >>= 4;
    } else { /* base 10: values printed in decimal are 32-bit */
      u32 w = (u32)v;
      digit = w % 10;
      v = w / 10;
    }
    buf[n++] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
  } while (v);
  if (negative) buf[n++] = '-';
  while (n < width) console_putc(pad), width--;
  while (n) console_putc(buf[--n]);
}

static void vprint(const char *fmt, va_list ap) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      console_putc(*fmt);
      continue;
    }
    fmt++;
    char pad = ' ';
    int width = 0, longs = 0;
    if (*fmt == '0') pad = '0', fmt++;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    while (*fmt == 'l') longs++, fmt++;
    switch (*fmt) {
      case 's': {
        const char *s = va_arg(ap, const char *);
        int len = 0;
        while (s[len]) len++;
        while (len < width) console_putc(' '), width--;
        while (*s) console_putc(*s++);
        break;
      }
      case 'c': console_putc((char)va_arg(ap, int)); break;
      case 'd': {
        int v = va_arg(ap, int);
        put_number(v < 0 ? (u32)-v : (u32)v, 10, width, pad, v < 0);
        break;
      }
      case 'u': put_number(longs >= 2 ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad, false); break;
      case 'x': put_number(longs >= 2 ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad, false); break;
      case 'p': put_number((u32)va_arg(ap, void *), 16, 8, '0', false); break;
      case '%': console_putc('%'); break;
      default: console_putc('?'); break;
    }
  }
}

void console_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprint(fmt, ap);
  va_end(ap);
}

static void line(const char *kind, const char *fmt, va_list ap) {
  console_printf("%s ", kind);
  vprint(fmt, ap);
  console_putc('\n');
}

const char *join(char *buf, const char *a, const char *b) {
  char *p = buf;
  while (*a) *p++ = *a++;
  while (*b) *p++ = *b++;
  *p = 0;
  return buf;
}

void info(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  line("INFO", fmt, ap);
  va_end(ap);
}

void platform(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  line("PLATFORM", fmt, ap);
  va_end(ap);
}

void result_pass(const char *name) {
  passed++;
  console_printf("RESULT %s PASS\n", name);
}

static void fail_line(const char *name, const char *fmt, va_list ap) {
  failed++;
  console_printf("RESULT %s FAIL ", name);
  vprint(fmt, ap);
  console_putc('\n');
}

void result_fail(const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_line(name, fmt, ap);
  va_end(ap);
}

bool check(const char *name, bool ok, const char *fail_fmt, ...) {
  if (ok) {
    result_pass(name);
    return true;
  }
  va_list ap;
  va_start(ap, fail_fmt);
  fail_line(name, fail_fmt, ap);
  va_end(ap);
  return false;
}

void result_observed(const char *name, const char *observation) {
  console_printf("RESULT %s %s\n", name, observation);
}

u32 results_passed(void) {
  return passed;
}

u32 results_failed(void) {
  return failed;
}
