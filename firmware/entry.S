/*
 * Multiboot entry, interrupt stubs and the few instructions C cannot express.
 * The loader (QEMU's multiboot ROM, or v86 without a BIOS) enters in flat 32-bit protected
 * mode with EAX = multiboot magic and EBX = the multiboot information structure.
 */
#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00000002 /* bit 1: pass the memory map */

        .section .multiboot, "a"
        .balign 4
        .long MULTIBOOT_MAGIC
        .long MULTIBOOT_FLAGS
        .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

        .section .bss
        .balign 16
stack_bottom:
        .skip 16384
stack_top:

        .section .text
        .globl _start
_start:
        cli
        movl $stack_top, %esp
        pushl $0
        popfl
        pushl %ebx                      /* multiboot info */
        pushl %eax                      /* multiboot magic */
        call guest_main                 /* never returns */
1:      cli
        hlt
        jmp 1b

/* void gdt_load(const void *descriptor): load the GDT and reload every segment register. */
        .globl gdt_load
gdt_load:
        movl 4(%esp), %eax
        lgdt (%eax)
        ljmp $0x08, $2f
2:      movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        ret

/* void idt_load(const void *descriptor) */
        .globl idt_load
idt_load:
        movl 4(%esp), %eax
        lidt (%eax)
        ret

/*
 * void mmio_write64(volatile void *address, uint32_t low, uint32_t high): one 8-byte store
 * (through an MMX register), for device registers that only act on a full 64-bit write.
 */
        .globl mmio_write64
mmio_write64:
        movl 4(%esp), %eax
        movq 8(%esp), %mm0
        movq %mm0, (%eax)
        emms
        ret

/*
 * u32 clflush_probe(const void *p): executes one CLFLUSH and returns 1; if the CPU raises #UD
 * instead, the exception handler resumes at clflush_probe_resume with EAX = 0.
 */
        .globl clflush_probe, clflush_probe_insn, clflush_probe_resume
clflush_probe:
        movl 4(%esp), %ecx
        movl $1, %eax
clflush_probe_insn:
        clflush (%ecx)
clflush_probe_resume:
        ret

/*
 * Interrupt stubs: one 16-byte slot per vector (vector_stubs + 16 * v). Exceptions that push no
 * error code push a 0 so every frame looks the same; vectors 0-31 go to exception_entry,
 * the rest to interrupt_entry.
 */
        .globl vector_stubs
        .balign 16
vector_stubs:
        .set vec, 0
        .rept 256
        .balign 16
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushl $0
        .endif
        pushl $vec
        .if vec < 32
        jmp exception_entry
        .else
        jmp interrupt_entry
        .endif
        .set vec, vec + 1
        .endr

exception_entry:
        pushal
        pushl %esp                      /* struct exception_frame * */
        call exception_handler          /* returns only for an expected fault (the CLFLUSH probe) */
        addl $4, %esp
        popal
        addl $8, %esp                   /* vector and error code */
        iret

interrupt_entry:
        pushal
        pushl 32(%esp)                  /* vector */
        call interrupt_handler
        addl $4, %esp
        popal
        addl $8, %esp                   /* vector and dummy error code */
        iret
