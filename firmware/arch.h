/* x86 basics for the test guest: port and MMIO access, CPU setup, interrupts, time. */
#ifndef ARCH_H
#define ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u32 mmio_read32(u32 address) { return *(volatile u32 *)address; }
static inline void mmio_write32(u32 address, u32 v) { *(volatile u32 *)address = v; }
/* One 8-byte store (entry.S), for registers that act only on a full 64-bit write. */
void mmio_write64(volatile void *address, u32 low, u32 high);

static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }
/* A full fence that needs no SSE2 (CPUs emulated by v86 and QEMU both have it anyway). */
static inline void memory_fence(void) { __asm__ volatile("lock; addl $0, (%%esp)" : : : "memory", "cc"); }

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* GDT, IDT, FPU/MMX, PIC masked, PIT as a free-running clock, LAPIC enabled; interrupts on. */
void arch_init(void);
/* CLFLUSH: advertised in CPUID.01H:EDX[19]; usable (it ran without #UD). */
bool cpu_clflush_in_cpuid(void);
bool cpu_has_clflush(void);
/* Flushes the cache lines covering [p, p+n) (clflush, or wbinvd without CLFSH). Returns lines. */
u32 cache_flush_range(const volatile void *p, u32 n);

/* Time from the PIT (1.193182 MHz): call often (at least every 50 ms) while waiting. */
u64 clock_ticks(void);
u64 deadline_after_ms(u32 ms);
bool deadline_passed(u64 deadline);
u32 ticks_to_ms(u64 ticks);

/* Local APIC: MSI destination and EOI. */
u32 lapic_id(void);
u32 interrupt_count(u8 vector);
/* Waits (at most `ms`) until `vector` has been taken more often than `before`; true if it was. */
bool interrupt_wait(u8 vector, u32 before, u32 ms);

/* Ends the run through the debug-exit port 0xF4 (QEMU isa-debug-exit: status (code<<1)|1). */
_Noreturn void guest_exit(u8 code);

#endif
