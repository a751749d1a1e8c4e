// Prints the closing line CI reads: "N passed, N failed, N skipped", from vitest's JSON report.
import { readFileSync } from "node:fs";
const report = JSON.parse(readFileSync(new URL("../build/test-results.json", import.meta.url), "utf8"));
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
