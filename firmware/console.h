/*
 * Serial console (COM1) and the transcript. Every transcript line has a kind:
 *   RESULT <name> PASS | FAIL <detail> | <observation>   a named check
 *   INFO <name> <value>        a fact that must be the same on every platform
 *   PLATFORM <name> <value>    a fact of this machine (PCI slot, BAR address, memory size)
 */
#ifndef CONSOLE_H
#define CONSOLE_H

#include "arch.h"

void console_init(void);
void console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* PASS if ok, else FAIL with the formatted detail. Returns ok. */
bool check(const char *name, bool ok, const char *fail_fmt, ...) __attribute__((format(printf, 3, 4)));
void result_pass(const char *name);
void result_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A RESULT that is neither PASS nor FAIL: what was observed. */
void result_observed(const char *name, const char *observation);
void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* a then b into buf (which must hold both and the terminator); returns buf. For check names. */
const char *join(char *buf, const char *a, const char *b);
void platform(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

u32 results_passed(void);
u32 results_failed(void);

#endif
