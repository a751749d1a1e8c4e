#include "pci.h"

#define PCI_ADDRESS 0xCF8
#define PCI_DATA 0xCFC

static u32 address(struct pci_function f, u8 offset) {
  return 0x80000000u | (u32)f.bus << 16 | (u32)f.dev << 11 | (u32)f.fn << 8 | (offset & 0xFC);
}

u32 pci_read32(struct pci_function f, u8 offset) {
  outl(PCI_ADDRESS, address(f, offset));
  return inl(PCI_DATA);
}

u16 pci_read16(struct pci_function f, u8 offset) {
  outl(PCI_ADDRESS, address(f, offset));
  return inw(PCI_DATA + (offset & 2));
}

u8 pci_read8(struct pci_function f, u8 offset) {
  outl(PCI_ADDRESS, address(f, offset));
  return inb(PCI_DATA + (offset & 3));
}

void pci_write16(struct pci_function f, u8 offset, u16 value) {
  outl(PCI_ADDRESS, address(f, offset));
  outw(PCI_DATA + (offset & 2), value);
}

bool pci_find(u16 vendor, u16 device, struct pci_function *out) {
  for (u8 dev = 0; dev < 32; dev++) {
    for (u8 fn = 0; fn < 8; fn++) {
      struct pci_function f = {0, dev, fn};
      u32 id = pci_read32(f, 0x00);
      if ((id & 0xFFFF) == 0xFFFF) {
        if (fn == 0) break;
        continue;
      }
      if ((id & 0xFFFF) == vendor && (id >> 16) == device) {
        *out = f;
        return true;
      }
      if (fn == 0 && !(pci_read8(f, 0x0E) & 0x80)) break; /* single-function device */
    }
  }
  return false;
}

void pci_write32(struct pci_function f, u8 offset, u32 value) {
  outl(PCI_ADDRESS, address(f, offset));
  outl(PCI_DATA, value);
}

u8 pci_find_capability(struct pci_function f, u8 id) {
  if (!(pci_read16(f, 0x06) & 0x10)) return 0; /* status: no capability list */
  u8 at = pci_read8(f, 0x34) & 0xFC;
  for (u32 hops = 0; at && hops < 48; hops++) {
    if (pci_read8(f, at) == id) return at;
    at = pci_read8(f, (u8)(at + 1)) & 0xFC;
  }
  return 0;
}
