#!/bin/sh
# /init of the v86-vtd Linux guest (busybox-static). Runs the DMA workload on the virtio-blk disk
# and prints machine-readable lines, one fact each: "RESULT <key> <value...>". src/linux reads them.
# Kernel command-line words the kernel does not know (workload_mib=N) arrive here as variables.

export PATH=/bin:/sbin
r() { echo "RESULT $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
r init "$(uptime_s)"
r kernel "$(uname -r)"
r cmdline "$(cat /proc/cmdline)"

# What the kernel's IOMMU driver said (its own words, with our prefix so nothing else matches).
dmesg | grep -i -e 'DMAR' -e 'iommu' | sed 's/^/DMESG /'

# IOMMU groups: every group with its devices and its default domain type.
groups=0
for g in /sys/kernel/iommu_groups/*; do
  [ -d "$g/devices" ] || continue
  groups=$((groups + 1))
  r iommu-group "${g##*/}" "$(cat "$g/type" 2>/dev/null || echo unknown)" $(ls "$g/devices")
done
r iommu-groups "$groups"
[ -d /sys/kernel/debug/iommu/intel ] && r debugfs-intel $(ls /sys/kernel/debug/iommu/intel)

# The virtio-blk device: its PCI function and its IOMMU group.
pci=
for v in /sys/bus/virtio/drivers/virtio_blk/virtio*; do
  [ -e "$v" ] || continue
  dev=$(readlink -f "$v")
  dev=${dev%/*}
  pci=${dev##*/}
done
if [ -n "$pci" ]; then
  group=$(readlink "/sys/bus/pci/devices/$pci/iommu_group")
  r virtio-blk "$pci" "${group##*/}"
else
  r virtio-blk none none
fi

# The workload: a known pattern written to /dev/vda and read back, both with O_DIRECT so every
# byte crosses the device's DMA (no page cache in between).
mib=${workload_mib:-4}
if [ -b /dev/vda ]; then
  r disk-bytes "$(blockdev --getsize64 /dev/vda)"
  yes 'v86-vtd virtio-blk DMA pattern 0123456789abcdef' | head -c $((mib * 1048576)) > /pattern
  r pattern-sha256 "$(sha256sum /pattern | cut -d' ' -f1)"
  r write-start "$mib" "$(uptime_s)"
  dd if=/pattern of=/dev/vda bs=64k oflag=direct conv=fsync 2>/dev/null
  r write-end "$?" "$(uptime_s)"
  rm /pattern
  r read-start "$mib" "$(uptime_s)"
  dd if=/dev/vda of=/readback bs=64k count=$((mib * 16)) iflag=direct 2>/dev/null
  r read-end "$?" "$(uptime_s)"
  r readback-sha256 "$(sha256sum /readback | cut -d' ' -f1)"
  rm /readback
else
  r disk-bytes none
fi

# Faults the driver reported ("DMAR: [DMA Read NO_PASID] Request device ..." in 6.1).
r dmar-faults "$(dmesg | grep -c -e 'DMAR: \[DMA' -e 'DMAR: DRHD: handling fault')"
r end "$(uptime_s)"

# Exit port 0xF4 (the v86 platform stops there); poweroff as a fallback.
printf '\000' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
poweroff -f
