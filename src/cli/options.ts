/**
 * The one command-line parser of the project's commands (`npm start`, `npm run linux`): a command
 * declares its options in a table (name, kind of value, default, usage text) and gets back a
 * strict parser and its usage text. Options are `--name value` or `--name=value`; every command
 * also takes `--help` (or `-h`); every mistake is an ArgumentError that names the option.
 */
export class ArgumentError extends Error {}

/** One option's words as the parser found them. */
export interface OptionReader {
  /** The option's name, without an inline `=value`. */
  readonly name: string;
  /** Its value; a following word that starts with "--" is taken for a missing value. */
  value(): string;
  /** Its value, whatever it looks like (a guest's command line may start with "--"). */
  anyValue(): string;
}

/** What an option's value is: how it is read from the words, checked and turned into a V. */
export interface OptionKind<V> {
  read(option: OptionReader): V;
}

function invalid(option: OptionReader, what: string): never {
  throw new ArgumentError(`option ${option.name}: ${what}`);
}

/** A switch with no value: present means true. */
export const flag: OptionKind<boolean> = { read: () => true };

/** One of a few words, each standing for a value: `oneOf({ on: true, off: false })`. */
export function oneOf<const V>(values: Readonly<Record<string, V>>): OptionKind<V> {
  const words = Object.keys(values);
  const expected = words.length === 1 ? words[0] : `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
  return {
    read(option) {
      const v = option.value();
      if (!Object.hasOwn(values, v)) invalid(option, `expected ${expected}, got "${v}"`);
      return values[v]!;
    },
  };
}

export const onOff: OptionKind<boolean> = oneOf({ on: true, off: false });

/** A whole number (decimal digits) from min to max. */
export function integer(min: number, max: number): OptionKind<number> {
  return {
    read(option) {
      const v = option.value();
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < min || n > max) invalid(option, `expected an integer ${min}..${max}, got "${v}"`);
      return n;
    },
  };
}

/** A time in seconds, more than zero (`2`, `0.5`). */
export const seconds: OptionKind<number> = {
  read(option) {
    const v = option.value();
    const s = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || !(s > 0)) invalid(option, `expected a number of seconds > 0, got "${v}"`);
    return s;
  },
};

/** A string. `anyValue`: the next word is taken even when it starts with "--". `refuse`: a pattern the value may not contain, and why. */
export function text(how: { anyValue?: boolean; refuse?: { pattern: RegExp; reason: string } } = {}): OptionKind<string> {
  return {
    read(option) {
      const v = how.anyValue ? option.anyValue() : option.value();
      if (how.refuse?.pattern.test(v)) invalid(option, how.refuse.reason);
      return v;
    },
  };
}

export interface OptionSpec<V> {
  /** The option as the usage shows it: its name, then what its value looks like (`--aw-bits 39|48`). */
  readonly usage: string;
  readonly kind: OptionKind<V>;
  readonly default: V;
  /** The usage's description, a string a line. */
  readonly help: string | readonly string[];
}

/** One row of a command's option table; the value's type is the kind's, widened by the default (`undefined` for "none given"). */
export function option<V, D extends V | undefined = V>(usage: string, kind: OptionKind<V>, defaultValue: D, help: string | readonly string[]): OptionSpec<V | D> {
  return { usage, kind, default: defaultValue, help };
}

export type OptionTable = Readonly<Record<string, OptionSpec<unknown>>>;

/** What a parser built from a table returns: one field a row, and `help`. */
export type ParsedOptions<T extends OptionTable> = { [K in keyof T]: T[K] extends OptionSpec<infer V> ? V : never } & { help: boolean };

const HELP = { names: ["--help", "-h"], usage: "--help", help: "this text" };

function optionName(spec: { usage: string }): string {
  return spec.usage.split(" ")[0]!;
}

/** Calls `handle` for every option in order; `handle` returns false for an unknown name. */
function readOptions(argv: readonly string[], handle: (option: OptionReader) => boolean): void {
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

/** The strict parser of a command whose options are `table`; a later word overrides an earlier one. */
export function parseOptions<T extends OptionTable>(table: T, argv: readonly string[]): ParsedOptions<T> {
  const parsed: Record<string, unknown> = { help: false };
  const byName = new Map<string, string>();
  for (const [key, spec] of Object.entries(table)) {
    parsed[key] = spec.default;
    byName.set(optionName(spec), key);
  }
  readOptions(argv, (reader) => {
    if (HELP.names.includes(reader.name)) {
      parsed.help = true;
      return true;
    }
    const key = byName.get(reader.name);
    if (key === undefined) return false;
    parsed[key] = table[key]!.kind.read(reader);
    return true;
  });
  return parsed as ParsedOptions<T>;
}

const USAGE_COLUMN = 24;

/** A command's usage: its head (what it does), then `options:` and a line a row (and --help). */
export function formatUsage(head: string, table: OptionTable): string {
  const rows = [...Object.values(table), HELP].map(({ usage, help }) => {
    const [first, ...more] = typeof help === "string" ? [help] : help;
    return [`  ${usage.padEnd(USAGE_COLUMN - 1)} ${first}`, ...more.map((line) => `  ${" ".repeat(USAGE_COLUMN)}${line}`)].join("\n");
  });
  return `${head}\n\noptions:\n${rows.join("\n")}`;
}
