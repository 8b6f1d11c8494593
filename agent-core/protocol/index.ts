export * from "./close-codes.ts";
export * from "./codec.ts";
export * from "./frames.ts";
export * from "./messages.ts";
export * from "./name-header.ts";
export * from "./secret.ts";

/** The WebSocket path agents connect to, relative to the controller URL. */
export const AGENT_WS_PATH = "agents/v1";
/** Upgrade headers carrying the launch inputs (the names Jenkins' wsagents endpoint uses). */
export const NAME_HEADER = "node-name";
export const SECRET_HEADER = "secret-key";
export const PROTOCOL_HEADER = "x-agent-protocol";
/** On a reconnect mid-job: the job being resumed (lets the controller replace a stale connection). */
export const RESUME_HEADER = "x-agent-resume";
/**
 * Discovery: `GET <controller url>agents/v1/discovery` answers 200 with this header (the protocol
 * versions spoken, comma separated) and a JSON body. A Jenkins controller answers with `X-Jenkins`.
 */
export const DISCOVERY_PATH = "agents/v1/discovery";
export const PROTOCOLS_HEADER = "x-agent-protocols";
