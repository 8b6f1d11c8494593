export * from "./close-codes.ts";
export * from "./codec.ts";
export * from "./frames.ts";
export * from "./messages.ts";
export * from "./secret.ts";

/** The WebSocket path agents connect to, relative to the controller URL. */
export const AGENT_WS_PATH = "agents/v1";
/** Upgrade headers carrying the launch inputs (the names Jenkins' wsagents endpoint uses). */
export const NAME_HEADER = "node-name";
export const SECRET_HEADER = "secret-key";
export const PROTOCOL_HEADER = "x-agent-protocol";
/** On a reconnect mid-job: the job being resumed (lets the controller replace a stale connection). */
export const RESUME_HEADER = "x-agent-resume";
export * from "./name-header.ts";
