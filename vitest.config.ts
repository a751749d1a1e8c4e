import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The JSON report lets CI print one "N passed, N failed" closing line.
    reporters: ["default", ["json", { outputFile: "build/test-results.json" }]],
  },
});
