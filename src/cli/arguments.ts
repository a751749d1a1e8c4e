/** The command line of `npm start` (src/main.ts): parsed strictly, every mistake named. */
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

export class ArgumentError extends Error {}

export function parseArguments(argv: readonly string[]): MainArguments {
  const parsed: MainArguments = { cachingMode: true, awBits: 48, kernel: undefined, cmdline: "", timeoutSeconds: DEFAULT_TIMEOUT_SECONDS, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith("--"))) throw new ArgumentError(`option ${name} needs a value`);
      return v;
    };
    switch (name) {
      case "--help":
      case "-h":
        parsed.help = true;
        break;
      case "--caching-mode": {
        const v = value();
        if (v !== "on" && v !== "off") throw new ArgumentError(`option --caching-mode: expected on or off, got "${v}"`);
        parsed.cachingMode = v === "on";
        break;
      }
      case "--aw-bits": {
        const v = value();
        if (v !== "39" && v !== "48") throw new ArgumentError(`option --aw-bits: expected 39 or 48, got "${v}"`);
        parsed.awBits = v === "39" ? 39 : 48;
        break;
      }
      case "--kernel":
        parsed.kernel = value();
        break;
      case "--cmdline": {
        // Not value(): a guest option may itself start with "--".
        const v = inline ?? argv[++i];
        if (v === undefined) throw new ArgumentError("option --cmdline needs a value");
        parsed.cmdline = v;
        break;
      }
      case "--timeout": {
        const v = value();
        const seconds = Number(v);
        if (!/^\d+(\.\d+)?$/.test(v) || !(seconds > 0)) throw new ArgumentError(`option --timeout: expected a number of seconds > 0, got "${v}"`);
        parsed.timeoutSeconds = seconds;
        break;
      }
      default:
        throw new ArgumentError(`unknown option ${name}${name.startsWith("-") ? "" : " (options start with --)"}`);
    }
  }
  return parsed;
}
