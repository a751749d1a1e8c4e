/**
 * `npm run demo`: builds the demo site (demo/build.ts) and serves it on a local port, printing the
 * URL. A plain static server: the page does all the work. `--port N` (default 8086; 0 picks a free
 * one), `--no-build` serves what build/demo holds.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { buildDemo, DEMO_BUILD_DIR } from "./build.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".elf": "application/octet-stream",
  ".png": "image/png",
};

export const DEFAULT_PORT = 8086;

/** Serves `directory` on 127.0.0.1:`port`; resolves with the server and its URL. */
export function serveDirectory(directory: string, port = DEFAULT_PORT): Promise<{ server: Server; url: string }> {
  const root = resolve(directory);
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? "/", "http://localhost").pathname);
    const file = normalize(join(root, path.endsWith("/") ? `${path}index.html` : path));
    let size = -1;
    if (file === root || file.startsWith(root + sep)) {
      try {
        const stat = statSync(file);
        if (stat.isFile()) size = stat.size;
      } catch {
        size = -1;
      }
    }
    if (size < 0 || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(size < 0 ? 404 : 405, { "content-type": "text/plain" }).end(size < 0 ? `not found: ${path}\n` : "GET only\n");
      return;
    }
    response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": size, "cache-control": "no-cache" });
    if (request.method === "HEAD") response.end();
    else createReadStream(file).pipe(response);
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === "EADDRINUSE" ? `option --port: port ${port} is in use (try --port 0)` : `serving the demo: ${error.message}`)),
    );
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const actual = typeof address === "object" && address ? address.port : port;
      resolvePromise({ server, url: `http://127.0.0.1:${actual}/` });
    });
  });
}

function portOption(argv: string[]): number {
  const at = argv.indexOf("--port");
  if (at < 0) return DEFAULT_PORT;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new Error(`option --port: expected 0..65535, got ${argv[at + 1] ?? "nothing"}`);
  return value;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const argv = process.argv.slice(2);
  Promise.resolve()
    .then(async () => {
      const port = portOption(argv);
      if (!argv.includes("--no-build")) {
        const site = await buildDemo();
        console.log(`built ${site.directory} (${site.files.length} files, ${(site.bytes / 1024).toFixed(0)} KiB)`);
      }
      const { url } = await serveDirectory(DEMO_BUILD_DIR, port);
      console.log(`demo: ${url}  (Ctrl-C stops)`);
    })
    .catch((error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    });
}
