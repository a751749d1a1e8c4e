/* ACPI: finds the RSDP, the RSDT/XSDT and the DMAR table, and decodes DMAR's DRHD units. */
#ifndef ACPI_H
#define ACPI_H

#include "arch.h"
#include "pci.h"

#define DMAR_MAX_UNITS 4
#define DMAR_MAX_SCOPES 16
#define DMAR_MAX_PATH 4

struct dmar_scope {
  u8 type, enumeration_id, start_bus, path_length;
  u8 path[DMAR_MAX_PATH][2]; /* {device, function} */
};

struct dmar_unit {
  u64 base;
  u8 flags;
  u16 segment;
  u32 scope_count;
  struct dmar_scope scopes[DMAR_MAX_SCOPES];
};

struct dmar_info {
  u32 rsdp, table; /* physical addresses */
  u8 haw_minus_one, flags;
  u32 unit_count, other_structures;
  struct dmar_unit units[DMAR_MAX_UNITS];
};

/* Fills *out; returns false with *why set when there is no usable RSDP or DMAR. */
bool acpi_find_dmar(struct dmar_info *out, const char **why);
/* Whether the unit's scope covers the function (endpoint path, or INCLUDE_PCI_ALL). */
bool dmar_unit_covers(const struct dmar_unit *unit, struct pci_function f);

#endif
