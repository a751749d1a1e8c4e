/** Where the site keeps what the page fetches, relative to index.html: demo/build.ts writes them, demo/main.ts reads them. */
export const SITE_FILES = { wasm: "v86.wasm", guest: "guests/vtd-test.elf" } as const;
