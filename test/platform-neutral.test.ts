/**
 * src/vtd-device and src/spec are platform-neutral: they run in a browser bundle and in any
 * emulator, so they import nothing but each other (src/vtd-device may use src/spec; src/spec uses
 * only itself), no package (not v86, no node: module) and touch no Node global. This test reads
 * the import graph and the identifiers of every non-test file there and fails on a violation.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const NODE_GLOBALS = new Set(["process", "Buffer", "require", "module", "exports", "__dirname", "__filename", "global", "setImmediate", "clearImmediate"]);
/** Folders each neutral folder may import from. */
const ALLOWED: Record<string, string[]> = {
  "src/spec": ["src/spec"],
  "src/vtd-device": ["src/vtd-device", "src/spec"],
};

function sourceFiles(folder: string): string[] {
  return readdirSync(join(ROOT, folder), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => join(folder, f));
}

/** Violations of the rule in one file's text (`file` is relative to the repository). */
export function violations(file: string, text: string, allowed: string[]): string[] {
  const found: string[] = [];
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const checkSpecifier = (specifier: string, node: ts.Node) => {
    const where = `${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
    if (!specifier.startsWith(".")) {
      found.push(`${where} imports the package "${specifier}"`);
      return;
    }
    const target = relative(ROOT, resolve(ROOT, dirname(file), specifier));
    if (!allowed.some((folder) => target === folder || target.startsWith(folder + "/"))) found.push(`${where} imports ${target}`);
  };
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      checkSpecifier(node.moduleSpecifier.text, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [argument] = node.arguments;
      if (argument && ts.isStringLiteral(argument)) checkSpecifier(argument.text, node);
      else found.push(`${file}: a dynamic import of a computed name`);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      checkSpecifier(node.argument.literal.text, node);
    } else if (ts.isIdentifier(node) && NODE_GLOBALS.has(node.text)) {
      const parent = node.parent;
      const isPropertyName = (ts.isPropertyAccessExpression(parent) && parent.name === node) || (ts.isPropertyAssignment(parent) && parent.name === node) ||
        ts.isPropertyDeclaration(parent) || ts.isMethodDeclaration(parent) || ts.isPropertySignature(parent) || ts.isMethodSignature(parent) ||
        (ts.isParameter(parent) && parent.name === node) || (ts.isVariableDeclaration(parent) && parent.name === node);
      if (!isPropertyName) found.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} uses the Node global ${node.text}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe("platform-neutral folders", () => {
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    it(`${folder} imports only ${allowed.join(" and ")} and uses no Node global`, () => {
      const files = sourceFiles(folder);
      expect(files.length).toBeGreaterThan(0);
      const found = files.flatMap((file) => violations(file, readFileSync(join(ROOT, file), "utf8"), allowed));
      expect(found).toEqual([]);
    });
  }

  it("the check finds each kind of violation", () => {
    const text = [
      'import { V86 } from "v86";',
      'import { readFileSync } from "node:fs";',
      'import { Machine } from "../v86/machine.ts";',
      'export { x } from "../guest-driver/index.ts";',
      'const later = await import("node:os");',
      "type T = import(\"../v86/internals.ts\").V86Cpu;",
      "const size = Buffer.byteLength('x') + process.pid;",
      'import { fine } from "./caches/iotlb.ts";',
      "const ok = { process: 1 }.process;",
    ].join("\n");
    const found = violations("src/vtd-device/example.ts", text, ALLOWED["src/vtd-device"]!);
    expect(found).toEqual([
      'src/vtd-device/example.ts:1 imports the package "v86"',
      'src/vtd-device/example.ts:2 imports the package "node:fs"',
      "src/vtd-device/example.ts:3 imports src/v86/machine.ts",
      "src/vtd-device/example.ts:4 imports src/guest-driver/index.ts",
      'src/vtd-device/example.ts:5 imports the package "node:os"',
      "src/vtd-device/example.ts:6 imports src/v86/internals.ts",
      "src/vtd-device/example.ts:7 uses the Node global Buffer",
      "src/vtd-device/example.ts:7 uses the Node global process",
    ]);
  });
});
