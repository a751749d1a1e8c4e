export * from "./revision.ts";
export * from "./field.ts";
export * from "./registers.ts";
export * from "./fault-reasons.ts";
export * from "./entries.ts";
export * from "./descriptors.ts";
export * from "./dmar.ts";
export * from "./interrupts.ts";
