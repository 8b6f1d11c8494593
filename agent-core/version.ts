/** The agent's version, reported in `hello`. Replaced at bundle time by scripts/build.mjs. */
declare const __AGENT_VERSION__: string | undefined;

export const AGENT_VERSION: string = typeof __AGENT_VERSION__ === "string" ? __AGENT_VERSION__ : "0.0.0-dev";

/** The protocol version this agent speaks. */
export const PROTOCOL_VERSION = 1;
