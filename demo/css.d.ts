/** esbuild bundles the page's style sheets (demo/build.ts); to TypeScript they are modules with nothing in them. */
declare module "*.css";
