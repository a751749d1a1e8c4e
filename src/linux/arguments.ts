/** The command line of `npm run linux` (src/linux/main.ts): parsed strictly, every mistake named. */
import { ArgumentError, onOff, positiveSeconds, readOptions } from "../cli/options.ts";
import { DEFAULT_DISK_MIB, DEFAULT_WORKLOAD_MIB } from "./boot.ts";

export interface LinuxArguments {
  cachingMode: boolean;
  /** Extra kernel command line (after console=ttyS0). */
  cmdline: string;
  timeoutSeconds: number;
  workloadMiB: number;
  /** Rebuild the kernel and initramfs even when cached. */
  rebuild: boolean;
  /** Print only the summary, not the streamed console. */
  quiet: boolean;
  help: boolean;
}

export const DEFAULT_LINUX_CMDLINE = "intel_iommu=on";
export const DEFAULT_LINUX_TIMEOUT_SECONDS = 180;

export const LINUX_USAGE = `usage: npm run linux -- [options]

Builds the Linux guest when missing (npm run build:linux: Debian's linux-source-6.1 on
tinyconfig, busybox-static initramfs), boots it in v86 with SeaBIOS, our VT-d unit and a
virtio-blk disk whose DMA goes through the unit, streams the console, and prints a summary:
what the guest reported (DMAR lines, IOMMU groups, the write/read-back sha256, faults) and
what the unit counted (invalidations by kind per MiB transferred, faults, boot-to-init time).
Exits 0 when the guest completed its workload with matching data and no DMAR fault, 1 otherwise
(with the last console lines), 124 on a timeout, 2 on a bad option.

options:
  --caching-mode on|off   the unit's CAP.CM (default off)
  --cmdline "<extra>"     kernel command line after console=ttyS0 (default "${DEFAULT_LINUX_CMDLINE}"),
                          e.g. "intel_iommu=on,strict", "intel_iommu=on iommu=pt", "intel_iommu=off"
  --timeout <seconds>     wall-clock limit for the boot (default ${DEFAULT_LINUX_TIMEOUT_SECONDS})
  --workload-mib <n>      MiB written to and read back from the disk (1..${DEFAULT_DISK_MIB}, default ${DEFAULT_WORKLOAD_MIB})
  --rebuild               rebuild the kernel and the initramfs even when cached
  --quiet                 do not stream the console
  --help                  this text`;

export { ArgumentError as LinuxArgumentError };

export function parseLinuxArguments(argv: readonly string[]): LinuxArguments {
  const parsed: LinuxArguments = {
    cachingMode: false,
    cmdline: DEFAULT_LINUX_CMDLINE,
    timeoutSeconds: DEFAULT_LINUX_TIMEOUT_SECONDS,
    workloadMiB: DEFAULT_WORKLOAD_MIB,
    rebuild: false,
    quiet: false,
    help: false,
  };
  readOptions(argv, (option) => {
    switch (option.name) {
      case "--help":
      case "-h":
        parsed.help = true;
        return true;
      case "--caching-mode":
        parsed.cachingMode = onOff(option);
        return true;
      case "--cmdline": {
        const v = option.anyValue();
        if (/[\r\n]/.test(v)) throw new ArgumentError("option --cmdline: a kernel command line has no line breaks");
        parsed.cmdline = v;
        return true;
      }
      case "--timeout":
        parsed.timeoutSeconds = positiveSeconds(option);
        return true;
      case "--workload-mib": {
        const v = option.value();
        const mib = Number(v);
        if (!/^\d+$/.test(v) || mib < 1 || mib > DEFAULT_DISK_MIB) throw new ArgumentError(`option --workload-mib: expected an integer 1..${DEFAULT_DISK_MIB}, got "${v}"`);
        parsed.workloadMiB = mib;
        return true;
      }
      case "--rebuild":
        parsed.rebuild = true;
        return true;
      case "--quiet":
        parsed.quiet = true;
        return true;
      default:
        return false;
    }
  });
  return parsed;
}
