/**
 * Errors raised by the agent. Every error carries a stable `code` (documented in the README);
 * tests and callers branch on `code`, never on the wording of `message`.
 */
export type AgentErrorCode =
  | "AGENT_ERR_CONFIG"
  | "AGENT_ERR_PROTOCOL"
  | "AGENT_ERR_CONTROLLER_REFUSED"
  | "AGENT_ERR_CONTROLLER_UNREACHABLE"
  | "AGENT_ERR_CONNECTION_LOST"
  | "AGENT_ERR_ACK_TIMEOUT"
  | "AGENT_ERR_WORKSPACE"
  | "AGENT_ERR_IDLE_TIMEOUT"
  | "AGENT_ERR_NO_JAVA"
  | "AGENT_ERR_AGENT_JAR"
  | "AGENT_ERR_INTERNAL";

export class AgentError extends Error {
  readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem found while validating an input: the field, the rule it broke, and the value (masked when secret). */
export interface ConfigProblem {
  field: string;
  message: string;
}

/** Launch inputs or configuration are invalid. Lists every problem at once. */
export class ConfigError extends AgentError {
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[], intro = "Invalid agent configuration") {
    const lines = problems.map((p) => `  - ${p.field}: ${p.message}`);
    super(
      "AGENT_ERR_CONFIG",
      `${intro} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines.join("\n")}`,
    );
    this.problems = problems;
  }
}

/** The peer broke protocol v1; `closeCode` is the WebSocket close code sent or received. */
export class ProtocolError extends AgentError {
  readonly closeCode: number;

  constructor(closeCode: number, message: string, options?: { cause?: unknown }) {
    super("AGENT_ERR_PROTOCOL", message, options);
    this.closeCode = closeCode;
  }
}

/** The controller answered the WebSocket upgrade with a refusal (missing headers, wrong secret, duplicate name, protocol version). */
export class ControllerRefusedError extends AgentError {
  readonly status: number;

  constructor(status: number, message: string) {
    super("AGENT_ERR_CONTROLLER_REFUSED", message);
    this.status = status;
  }
}

export class WorkspaceError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_ERR_WORKSPACE", message, options);
  }
}
