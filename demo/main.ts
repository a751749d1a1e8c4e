/**
 * The demo page's entry: reads the choices from the URL, fetches v86.wasm and the C test guest
 * from beside the page, patches and compiles v86 as the package's entry does (compilePatchedV86:
 * CLFLUSH and the I/O APIC), and boots. `window.demo` exposes the page's figures to tests and to the
 * figures script (demo/figures.ts).
 */
import "./style.css";
import { checkMultibootImage } from "../src/v86/multiboot.ts";
import { compilePatchedV86 } from "../src/v86/index.ts";
import { DemoPage } from "./page.ts";
import { parseSettings } from "./settings.ts";
import { SITE_FILES } from "./site-files.ts";
import { fetchBytes, fetchManifest } from "./assets.ts";


async function main(): Promise<void> {
  const { settings, errors } = parseSettings(location.search);
  const page = new DemoPage(settings, errors);
  (window as unknown as { demo: DemoPage }).demo = page;
  const started = performance.now();
  try {
    const [wasm, guest, manifest] = await Promise.all([fetchBytes(SITE_FILES.wasm), fetchBytes(SITE_FILES.guest), fetchManifest()]);
    try {
      checkMultibootImage(guest);
    } catch (error) {
      throw new Error(`${SITE_FILES.guest}: ${error instanceof Error ? error.message : String(error)}`);
    }
    let wasmModule: WebAssembly.Module;
    try {
      wasmModule = await compilePatchedV86(wasm);
    } catch (error) {
      throw new Error(`${SITE_FILES.wasm}: ${error instanceof Error ? error.message : String(error)}`);
    }
    page.ready({ wasmModule, guest }, manifest, performance.now() - started);
  } catch (error) {
    page.fatal(error instanceof Error ? error.message : String(error));
  }
}

void main();
