import type * as z from "zod/mini";
import { clip } from "../clip.ts";
import { ProtocolError } from "../errors.ts";
import { safeCut } from "../logs/utf8.ts";
import { validateInput } from "../validation.ts";
import { CloseCode } from "./close-codes.ts";
import {
  type AgentMessage,
  agentMessageSchemas,
  type ControllerMessage,
  controllerMessageSchemas,
} from "./messages.ts";

type SchemaTable = Record<string, z.ZodMiniType>;

function decode<T>(text: string, table: SchemaTable, from: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(
      CloseCode.malformed,
      `${from} sent a text frame that is not JSON: ${preview(text)}`,
      {
        cause: error,
      },
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(
      CloseCode.malformed,
      `${from} sent ${preview(text)}: a message must be a JSON object`,
    );
  }
  const record = value as Record<string, unknown>;
  if (record.v !== 1) {
    throw new ProtocolError(
      CloseCode.unsupportedVersion,
      `${from} sent protocol version ${JSON.stringify(record.v)}; this peer speaks version 1`,
    );
  }
  const type = record.type;
  const schema = typeof type === "string" && Object.hasOwn(table, type) ? table[type] : undefined;
  if (schema === undefined) {
    throw new ProtocolError(
      CloseCode.unknownType,
      `${from} sent unknown message type ${JSON.stringify(type)} (expected one of ${Object.keys(table).join(", ")})`,
    );
  }
  const parsed = validateInput(schema, value);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "(message)"}: ${i.message}`)
      .join("; ");
    throw new ProtocolError(
      CloseCode.invalidMessage,
      `${from} sent an invalid "${type}" message: ${problems}`,
    );
  }
  return parsed.data as T;
}

/** Parses a text frame sent by an agent. Throws ProtocolError with the close code to use. */
export function decodeAgentMessage(text: string): AgentMessage {
  return decode<AgentMessage>(text, agentMessageSchemas, "the agent");
}

/** Parses a text frame sent by a controller. Throws ProtocolError with the close code to use. */
export function decodeControllerMessage(text: string): ControllerMessage {
  return decode<ControllerMessage>(text, controllerMessageSchemas, "the controller");
}

export function encodeMessage(message: AgentMessage | ControllerMessage): string {
  return JSON.stringify(message);
}

/** A close reason must fit in 123 bytes of UTF-8. */
export function closeReason(text: string): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= 123) return text;
  return bytes.toString("utf8", 0, safeCut(bytes, 123));
}

function preview(text: string): string {
  return JSON.stringify(clip(text, 80));
}
