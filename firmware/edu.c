#include "edu.h"

#define EDU_DMA_SOURCE 0x80
#define EDU_DMA_DESTINATION 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_COMMAND 0x98
#define EDU_DMA_START 0x1
#define EDU_DMA_TO_RAM 0x2
#define EDU_DMA_TIMEOUT_MS 3000

bool edu_find(struct edu *e) {
  if (!pci_find(EDU_VENDOR, EDU_DEVICE, &e->pci)) return false;
  e->sid = pci_sid(e->pci);
  e->bar0 = pci_read32(e->pci, 0x10) & ~0xFu;
  return true;
}

void edu_enable(const struct edu *e) {
  u16 command = pci_read16(e->pci, 0x04);
  pci_write16(e->pci, 0x04, command | 0x2 | 0x4);
}

u32 edu_read(const struct edu *e, u32 offset) {
  return mmio_read32(e->bar0 + offset);
}

void edu_write(const struct edu *e, u32 offset, u32 value) {
  mmio_write32(e->bar0 + offset, value);
}

/* DMA address registers are 64-bit; edu only takes them as one 8-byte write. */
static void write_address(const struct edu *e, u32 offset, u64 value) {
  mmio_write64((volatile void *)(e->bar0 + offset), (u32)value, (u32)(value >> 32));
}

bool edu_dma(const struct edu *e, enum edu_direction dir, u64 bus_address, u32 buffer_offset, u32 count) {
  u64 device = EDU_BUFFER + buffer_offset;
  write_address(e, EDU_DMA_SOURCE, dir == EDU_TO_DEVICE ? bus_address : device);
  write_address(e, EDU_DMA_DESTINATION, dir == EDU_TO_DEVICE ? device : bus_address);
  write_address(e, EDU_DMA_COUNT, count);
  edu_write(e, EDU_DMA_COMMAND, EDU_DMA_START | (dir == EDU_TO_RAM ? EDU_DMA_TO_RAM : 0));
  u64 deadline = deadline_after_ms(EDU_DMA_TIMEOUT_MS);
  while (edu_read(e, EDU_DMA_COMMAND) & EDU_DMA_START)
    if (deadline_passed(deadline)) return false;
  return true;
}
