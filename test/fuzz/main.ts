/**
 * npm run fuzz -- --seed S --programs N [--time-limit SEC] [--step-limit-ms MS] [--keep-going]
 *                 [--no-minimise] [--minimise-budget SEC] [--save DIR] [--replay FILE|DIR]
 *
 * Runs seeded random guest programs against the unit and the independent oracle. On a failure it
 * prints the seed, the program's index and a minimised program (JSON, replayable with --replay);
 * exit 1. --keep-going reports every distinct finding (check and first words of the message)
 * instead of stopping at the first. A bad option: exit 2.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generate } from "./generate.ts";
import { confirmed, minimise, signature } from "./minimise.ts";
import { loadPrograms, programSeed } from "./program.ts";
import { runProgram } from "./run.ts";

interface Options {
  seed: number;
  programs: number;
  timeLimit: number;
  stepLimitMs: number;
  keepGoing: boolean;
  minimise: boolean;
  minimiseBudget: number;
  save: string | undefined;
  replay: string | undefined;
  trace: boolean;
  only: number | undefined;
}

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- --seed S --programs N [--time-limit SEC] [--step-limit-ms MS] [--keep-going] [--no-minimise] [--minimise-budget SEC] [--save DIR] [--replay FILE|DIR] [--only INDEX] [--trace]\n`);
  process.exit(2);
}

function parse(argv: string[]): Options {
  const o: Options = { seed: 1, programs: 1000, timeLimit: Infinity, stepLimitMs: 500, keepGoing: false, minimise: true, minimiseBudget: 120, save: undefined, replay: undefined, trace: false, only: undefined };
  const number = (name: string, value: string | undefined, integer: boolean, min: number): number => {
    if (value === undefined) usage(`option ${name} needs a value`);
    const v = Number(value);
    if (value.trim() === "" || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v)) || v < min) usage(`option ${name}: expected ${integer ? "an integer" : "a number"} >= ${min}, got ${JSON.stringify(value)}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    switch (name) {
      case "--seed": o.seed = number(name, value(), true, -(2 ** 31)); break;
      case "--programs": o.programs = number(name, value(), true, 1); break;
      case "--time-limit": o.timeLimit = number(name, value(), false, 0); break;
      case "--step-limit-ms": o.stepLimitMs = number(name, value(), false, 1); break;
      case "--minimise-budget": o.minimiseBudget = number(name, value(), false, 0); break;
      case "--keep-going": o.keepGoing = true; break;
      case "--no-minimise": o.minimise = false; break;
      case "--trace": o.trace = true; break;
      case "--only": o.only = number(name, value(), true, 0); break;
      case "--save": o.save = value() ?? usage("option --save needs a directory"); break;
      case "--replay": o.replay = value() ?? usage("option --replay needs a file or directory"); break;
      default: usage(`unknown option ${JSON.stringify(arg)}`);
    }
  }
  return o;
}

function main(): void {
  const o = parse(process.argv.slice(2));
  const limits = { stepLimitMs: o.stepLimitMs };
  if (o.replay) {
    let failed = 0;
    for (const { name, program } of loadPrograms(o.replay)) {
      const r = runProgram(program, o.trace ? { ...limits, trace: (line) => process.stdout.write(line + "\n") } : limits);
      process.stdout.write(`${name}: ${r.failure ? `FAIL step ${r.failure.step} ${r.failure.check}: ${r.failure.message}` : "pass"} (worst step ${r.worstMs.toFixed(2)} ms)\n`);
      if (r.failure) failed++;
    }
    process.exit(failed > 0 ? 1 : 0);
  }
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const seen = new Map<string, number>();
  let worst = { ms: 0, index: -1, step: -1 }, ran = 0, steps = 0, dmas = 0, shadowChecks = 0, lastReport = started;
  const first = o.only ?? 0, end = o.only === undefined ? o.programs : o.only + 1;
  const runLimits = o.trace ? { ...limits, trace: (line: string) => process.stdout.write(line + "\n") } : limits;
  for (let index = first; index < end; index++) {
    if ((performance.now() - started) / 1000 > o.timeLimit) break;
    const program = generate(programSeed(o.seed, index));
    const r = runProgram(program, runLimits);
    ran++;
    steps += r.steps;
    dmas += r.dmas;
    shadowChecks += r.shadowChecks;
    if (r.worstMs > worst.ms) worst = { ms: r.worstMs, index, step: r.worstStep };
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      process.stderr.write(`  ${ran} programs, ${(ran / ((lastReport - started) / 1000)).toFixed(0)}/s, ${seen.size} findings\n`);
    }
    if (!r.failure) continue;
    if (!confirmed(program, r.failure, limits)) {
      process.stderr.write(`  program #${index}: a slow step (${r.failure.message}) was not slow again: not a finding\n`);
      continue;
    }
    const sig = signature(r.failure);
    seen.set(sig, (seen.get(sig) ?? 0) + 1);
    if (o.keepGoing && seen.get(sig)! > 1) continue;
    let shown = { program, failure: r.failure };
    if (o.minimise) {
      const m = minimise(program, r.failure, { ...limits, budgetMs: o.minimiseBudget * 1000 });
      shown = m;
    }
    process.stdout.write(
      `\nFINDING (${r.failure.check}) seed ${o.seed}, program #${index} (program seed ${programSeed(o.seed, index)}), step ${r.failure.step}: ${r.failure.message}\n` +
        (o.minimise ? `minimised to ${shown.program.steps.length} steps (of ${program.steps.length}); fails at step ${shown.failure.step}: ${shown.failure.message}\n` : "") +
        `${JSON.stringify(shown.program)}\n`,
    );
    if (o.save) {
      mkdirSync(o.save, { recursive: true });
      const file = join(o.save, `${shown.failure.check}-seed${o.seed}-p${index}.json`);
      writeFileSync(file, JSON.stringify({ check: shown.failure.check, message: shown.failure.message, seed: o.seed, index, program: shown.program }, null, 1) + "\n");
      process.stdout.write(`saved ${file}\n`);
    }
    if (!o.keepGoing) break;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(
    `\n${ran} programs (${steps} steps, ${dmas} DMAs, ${shadowChecks} shadow checks) in ${seconds.toFixed(1)} s: ${(ran / seconds).toFixed(0)} programs/s ` +
      `(${(ran / cpuSeconds).toFixed(0)} per CPU second)\n` +
      `worst host time of one guest action: ${worst.ms.toFixed(2)} ms (program #${worst.index}, step ${worst.step})\n` +
      (seen.size === 0 ? "no findings\n" : `findings:\n${[...seen].map(([s, n]) => `  ${n}× ${s}`).join("\n")}\n`),
  );
  process.exit(seen.size > 0 ? 1 : 0);
}

main();
