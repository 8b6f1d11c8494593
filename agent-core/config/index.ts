export * from "./config.ts";
export * from "./tunables.ts";
