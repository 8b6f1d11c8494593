/**
 * WebSocket close codes used by protocol v1. 1000-1011 are RFC 6455's; 4000-4999 are ours.
 * Both sides close with one of these and a short reason text, and log a diagnostic.
 */
export const CloseCode = {
  /** Orderly end: the job is over and acknowledged, or the agent had nothing to do. */
  normal: 1000,
  /** The controller is shutting down, or the agent was interrupted (SIGTERM) before a job arrived. */
  goingAway: 1001,
  /** RFC 6455 protocol error (ws raises it for invalid frames). */
  protocolError: 1002,
  /** A text frame that is not valid UTF-8 (ws closes with it by itself). */
  invalidPayload: 1007,
  /** A frame larger than `maxPayload` (ws closes with it by itself). */
  messageTooBig: 1009,
  /** An unexpected failure inside the peer. */
  internalError: 1011,
  /**
   * Try again later (RFC 6455 registry): the controller's store was full and has room again;
   * the agent resumes and sends again what was not stored.
   */
  tryAgainLater: 1013,
  /** A text frame that is not valid JSON, or a binary frame that cannot be decoded. */
  malformed: 4000,
  /** Valid JSON that does not match the schema of its `type`. */
  invalidMessage: 4001,
  /** A `type` this protocol version does not define. */
  unknownType: 4002,
  /** A known message at a point of the session where it is not allowed. */
  outOfOrder: 4003,
  /** The envelope's `v` is not a version this peer speaks. */
  unsupportedVersion: 4004,
  /**
   * No pong to a ping within the heartbeat timeout. The connection is dropped without a close
   * frame (the peer is unresponsive), so the peer sees 1006; the code is recorded locally.
   */
  heartbeatTimeout: 4005,
  /** Sent output or `job-end` was not acknowledged within the ack timeout (agent side). */
  ackTimeout: 4006,
  /** A resuming hello names a job the controller cannot resume (unknown, ended, another agent's). */
  resumeRefused: 4007,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Whether a session that ended with `code` mid-job is worth resuming: a drop of the network or of
 * the peer process (1001, 1006, 1011, the heartbeat and ack timeouts) is, and so is 1013 (the
 * controller's store had no room for a while); a close that says the
 * peers disagree (an orderly 1000, invalid payloads, the 4000-4004 protocol errors, a refused
 * resume) is not. Both sides use this one rule: the agent to decide whether to reconnect, the
 * controller whether to hold the job for it.
 */
export function isResumableClose(code: number): boolean {
  if (code >= CloseCode.malformed && code <= CloseCode.unsupportedVersion) return false;
  return ![
    CloseCode.normal,
    CloseCode.invalidPayload,
    CloseCode.messageTooBig,
    CloseCode.resumeRefused,
  ].includes(code as never);
}
