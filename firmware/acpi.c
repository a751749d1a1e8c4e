#include "acpi.h"
#include "vtd-spec.h"

static u8 sum(const u8 *p, u32 n) {
  u8 s = 0;
  while (n--) s = (u8)(s + *p++);
  return s;
}

static u16 rd16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 rd32(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }
static u64 rd64(const u8 *p) { return rd32(p) | (u64)rd32(p + 4) << 32; }

static const u8 *scan_rsdp(u32 start, u32 length) {
  for (u32 a = start; a + 20 <= start + length; a += 16) {
    const u8 *p = (const u8 *)a;
    if (memcmp(p, "RSD PTR ", 8) == 0 && sum(p, 20) == 0) return p;
  }
  return 0;
}

static bool table_ok(const u8 *t) {
  u32 length = rd32(t + 4);
  return length >= 36 && length < (1u << 20) && sum(t, length) == 0;
}

static void parse_units(const u8 *dmar, struct dmar_info *out) {
  u32 length = rd32(dmar + 4);
  for (u32 off = VTD_DMAR_TABLE_STRUCTURES; off + 4 <= length;) {
    const u8 *s = dmar + off;
    u16 type = rd16(s), slen = rd16(s + 2);
    if (slen < 4 || off + slen > length) break;
    if (type == VTD_REMAPPING_STRUCTURE_TYPE_DRHD && out->unit_count < DMAR_MAX_UNITS) {
      struct dmar_unit *u = &out->units[out->unit_count++];
      u->flags = s[VTD_DRHD_FLAGS];
      u->segment = rd16(s + VTD_DRHD_SEGMENT);
      u->base = rd64(s + VTD_DRHD_REGISTER_BASE);
      for (u32 so = VTD_DRHD_DEVICE_SCOPES; so + 6 <= slen;) {
        const u8 *d = s + so;
        u8 dlen = d[VTD_DEVICE_SCOPE_LENGTH];
        if (dlen < 6 || so + dlen > slen) break;
        if (u->scope_count < DMAR_MAX_SCOPES) {
          struct dmar_scope *sc = &u->scopes[u->scope_count++];
          sc->type = d[VTD_DEVICE_SCOPE_TYPE];
          sc->enumeration_id = d[VTD_DEVICE_SCOPE_ENUMERATION_ID];
          sc->start_bus = d[VTD_DEVICE_SCOPE_START_BUS];
          u32 pairs = (dlen - VTD_DEVICE_SCOPE_PATH) / 2;
          sc->path_length = (u8)(pairs > DMAR_MAX_PATH ? DMAR_MAX_PATH : pairs);
          for (u32 i = 0; i < sc->path_length; i++) {
            sc->path[i][0] = d[VTD_DEVICE_SCOPE_PATH + 2 * i];
            sc->path[i][1] = d[VTD_DEVICE_SCOPE_PATH + 2 * i + 1];
          }
        }
        so += dlen;
      }
    } else if (type != VTD_REMAPPING_STRUCTURE_TYPE_DRHD) {
      out->other_structures++;
    }
    off += slen;
  }
}

bool acpi_find_dmar(struct dmar_info *out, const char **why) {
  memset(out, 0, sizeof(*out));
  const u8 *rsdp = 0;
  u32 ebda = (u32)*(const volatile u16 *)0x40E << 4;
  if (ebda >= 0x80000 && ebda < 0xA0000) rsdp = scan_rsdp(ebda, 1024);
  if (!rsdp) rsdp = scan_rsdp(0xE0000, 0x20000);
  if (!rsdp) {
    *why = "no RSDP in the EBDA or 0xE0000-0xFFFFF";
    return false;
  }
  out->rsdp = (u32)rsdp;
  /* A 32-bit guest uses the XSDT only when it lies below 4 GiB. */
  const u8 *sdt = (const u8 *)rd32(rsdp + 16);
  u32 entry_size = 4;
  if (rsdp[15] >= 2 && sum(rsdp, rd32(rsdp + 20)) == 0) {
    u64 xsdt = rd64(rsdp + 24);
    if (xsdt && xsdt < 0x100000000ull && table_ok((const u8 *)(u32)xsdt)) {
      sdt = (const u8 *)(u32)xsdt;
      entry_size = 8;
    }
  }
  if (!sdt || !table_ok(sdt)) {
    *why = "RSDT checksum or length bad";
    return false;
  }
  u32 entries = (rd32(sdt + 4) - 36) / entry_size;
  for (u32 i = 0; i < entries; i++) {
    const u8 *e = sdt + 36 + i * entry_size;
    u64 address = entry_size == 8 ? rd64(e) : rd32(e);
    if (!address || address >= 0x100000000ull) continue;
    const u8 *t = (const u8 *)(u32)address;
    if (memcmp(t, "DMAR", 4) != 0) continue;
    if (!table_ok(t)) {
      *why = "DMAR checksum or length bad";
      return false;
    }
    out->table = (u32)t;
    out->haw_minus_one = t[VTD_DMAR_TABLE_HOST_ADDRESS_WIDTH];
    out->flags = t[VTD_DMAR_TABLE_FLAGS];
    parse_units(t, out);
    return true;
  }
  *why = "no DMAR table in the RSDT";
  return false;
}

bool dmar_unit_covers(const struct dmar_unit *unit, struct pci_function f) {
  if (unit->flags & VTD_DRHD_FLAGS_INCLUDE_PCI_ALL) return true;
  for (u32 i = 0; i < unit->scope_count; i++) {
    const struct dmar_scope *s = &unit->scopes[i];
    if (s->type != VTD_DEVICE_SCOPE_TYPE_PCI_ENDPOINT || s->path_length == 0) continue;
    /* Follow the path: each pair but the last names a bridge whose secondary bus holds the next. */
    u8 bus = s->start_bus;
    for (u32 p = 0; p + 1 < s->path_length; p++) {
      struct pci_function bridge = {bus, s->path[p][0], s->path[p][1]};
      bus = pci_read8(bridge, 0x19);
    }
    const u8 *last = s->path[s->path_length - 1];
    if (bus == f.bus && last[0] == f.dev && last[1] == f.fn) return true;
  }
  return false;
}
