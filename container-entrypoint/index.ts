/** The container entrypoint's public face. */

export { HELP_TEXT, type LaunchPlan, parseLaunch } from "./launch-args.ts";
export { type EntrypointIo, runEntrypoint } from "./main.ts";
