/*
 * QEMU's edu PCI device (1234:11e8) and the v86 platform's edu-compatible device: a DMA engine
 * between guest memory (addressed by bus address, i.e. IOVA when translated) and a 4 KiB buffer
 * at device address 0x40000.
 */
#ifndef EDU_H
#define EDU_H

#include "pci.h"

#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11E8
#define EDU_BUFFER 0x40000u
#define EDU_BUFFER_SIZE 4096u

struct edu {
  struct pci_function pci;
  u16 sid;
  u32 bar0;
};

enum edu_direction { EDU_TO_DEVICE, EDU_TO_RAM };

bool edu_find(struct edu *e);
/* Memory space + bus master on (16-bit command write). */
void edu_enable(const struct edu *e);
u32 edu_read(const struct edu *e, u32 offset);
void edu_write(const struct edu *e, u32 offset, u32 value);
/*
 * One DMA of count bytes between bus address `bus_address` and the device buffer at
 * `buffer_offset`; waits (bounded) until the device reports it finished. False on timeout.
 */
bool edu_dma(const struct edu *e, enum edu_direction dir, u64 bus_address, u32 buffer_offset, u32 count);

#endif
