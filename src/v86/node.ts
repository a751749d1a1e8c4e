/**
 * The Node entry of the v86 glue (`v86-vtd/v86/node`): everything of `v86-vtd/v86`, plus what
 * reads v86.wasm from the installed v86 package: patchedV86Module (patched and compiled once per
 * process), readV86Wasm, and runMultibootGuest that needs no `wasmModule`.
 */
export * from "./index.ts";
export { runMultibootGuest } from "./run-guest.ts";
export { patchedV86Module, readV86Wasm, v86PackageDirectory } from "./v86-wasm.node.ts";
