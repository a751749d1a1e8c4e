/* PCI configuration space through the 0xCF8/0xCFC mechanism, bus 0 and bridges below it. */
#ifndef PCI_H
#define PCI_H

#include "arch.h"

struct pci_function {
  u8 bus, dev, fn;
};

static inline u16 pci_sid(struct pci_function f) {
  return (u16)(f.bus << 8 | f.dev << 3 | f.fn);
}

u32 pci_read32(struct pci_function f, u8 offset);
u16 pci_read16(struct pci_function f, u8 offset);
u8 pci_read8(struct pci_function f, u8 offset);
/* 16-bit write: v86 drops 32-bit writes to the command register. */
void pci_write16(struct pci_function f, u8 offset, u16 value);
/* 32-bit write (not to the command register: see pci_write16). */
void pci_write32(struct pci_function f, u8 offset, u32 value);
/* Offset of capability `id` in the function's capability list, or 0. */
u8 pci_find_capability(struct pci_function f, u8 id);
/* Finds the first function with this vendor:device id on bus 0. */
bool pci_find(u16 vendor, u16 device, struct pci_function *out);

#endif
