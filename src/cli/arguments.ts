/** The command line of `npm start` (src/main.ts): parsed strictly, every mistake named. */
import { ArgumentError, onOff, positiveSeconds, readOptions } from "./options.ts";
export interface MainArguments {
  cachingMode: boolean;
  awBits: 39 | 48;
  kernel: string | undefined;
  /** The guest's (multiboot) command line. */
  cmdline: string;
  timeoutSeconds: number;
  help: boolean;
}

export const DEFAULT_KERNEL = "build/firmware/vtd-test.elf";
export const DEFAULT_TIMEOUT_SECONDS = 60;

export const USAGE = `usage: npm start -- [options]

Boots the VT-d test guest in v86 with the emulated IOMMU, streams its serial output,
then prints a summary of the unit (VER/CAP/ECAP/GSTS/FSTS, invalidations, faults).
Exits with the guest's exit code (124 on timeout).

options:
  --caching-mode on|off   CAP.CM (default on)
  --aw-bits 39|48         guest address width (default 48)
  --kernel <file>         multiboot ELF to boot (default ${DEFAULT_KERNEL},
                          built by npm run build:firmware when missing)
  --cmdline "<text>"      the guest's command line; the test guest knows
                          skip-cm-invalidation, no-qi, translation-off, dma-rounds=N
  --timeout <seconds>     wall-clock limit (default ${DEFAULT_TIMEOUT_SECONDS})
  --help                  this text`;

export { ArgumentError };

export function parseArguments(argv: readonly string[]): MainArguments {
  const parsed: MainArguments = { cachingMode: true, awBits: 48, kernel: undefined, cmdline: "", timeoutSeconds: DEFAULT_TIMEOUT_SECONDS, help: false };
  readOptions(argv, (option) => {
    switch (option.name) {
      case "--help":
      case "-h":
        parsed.help = true;
        return true;
      case "--caching-mode":
        parsed.cachingMode = onOff(option);
        return true;
      case "--aw-bits": {
        const v = option.value();
        if (v !== "39" && v !== "48") throw new ArgumentError(`option --aw-bits: expected 39 or 48, got "${v}"`);
        parsed.awBits = v === "39" ? 39 : 48;
        return true;
      }
      case "--kernel":
        parsed.kernel = option.value();
        return true;
      case "--cmdline":
        parsed.cmdline = option.anyValue(); // a guest option may itself start with "--"
        return true;
      case "--timeout":
        parsed.timeoutSeconds = positiveSeconds(option);
        return true;
      default:
        return false;
    }
  });
  return parsed;
}
