/**
 * Node only: finds v86.wasm in the installed package, checks the version, patches it (patchV86Wasm) and
 * compiles it once per process. A browser page would fetch the bytes and call `patchV86Wasm` itself.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { patchV86Wasm, V86_VERSION } from "./wasm-patch.ts";

const require = createRequire(import.meta.url);

export function v86PackageDirectory(): string {
  return dirname(require.resolve("v86/package.json"));
}

/** The bytes of the installed build/v86.wasm, after checking the package is the pinned version. */
export function readV86Wasm(): Uint8Array {
  const directory = v86PackageDirectory();
  const { version } = JSON.parse(readFileSync(join(directory, "package.json"), "utf8")) as { version: string };
  if (!version.startsWith(V86_VERSION)) {
    throw new Error(`v86 ${version} is installed, but this project patches v86 ${V86_VERSION} only (npm install --save-exact v86@${V86_VERSION})`);
  }
  const file = readFileSync(join(directory, "build", "v86.wasm"));
  return new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** The patched, compiled v86 module, shared by all machines of this process. */
export function patchedV86Module(): Promise<WebAssembly.Module> {
  compiled ??= Promise.resolve().then(() => WebAssembly.compile(patchV86Wasm(readV86Wasm())));
  return compiled;
}
