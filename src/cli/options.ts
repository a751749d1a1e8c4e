/**
 * What the project's commands (`npm start`, `npm run linux`) share on their command lines:
 * `--name value` or `--name=value`, every mistake an ArgumentError that names the option.
 */
export class ArgumentError extends Error {}

export interface OptionReader {
  /** The option's name, without an inline `=value`. */
  readonly name: string;
  /** Its value; a following word that starts with "--" is taken for a missing value. */
  value(): string;
  /** Its value, whatever it looks like (a guest's command line may start with "--"). */
  anyValue(): string;
}

/** Calls `handle` for every option in order; `handle` returns false for an unknown name. */
export function readOptions(argv: readonly string[], handle: (option: OptionReader) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const take = (strict: boolean): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (strict && inline === undefined && v.startsWith("--"))) throw new ArgumentError(`option ${name} needs a value`);
      return v;
    };
    const known = handle({ name, value: () => take(true), anyValue: () => take(false) });
    if (!known) throw new ArgumentError(`unknown option ${name}${name.startsWith("-") ? "" : " (options start with --)"}`);
  }
}

export function onOff(option: OptionReader): boolean {
  const v = option.value();
  if (v !== "on" && v !== "off") throw new ArgumentError(`option ${option.name}: expected on or off, got "${v}"`);
  return v === "on";
}

export function positiveSeconds(option: OptionReader): number {
  const v = option.value();
  const seconds = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(seconds > 0)) throw new ArgumentError(`option ${option.name}: expected a number of seconds > 0, got "${v}"`);
  return seconds;
}
