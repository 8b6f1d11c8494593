/**
 * Agent diagnostics: one JSON object per line (level, msg, time, agent, job, ...fields),
 * written through `write` (the wrapper passes stderr). Never mixed with job output.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines also carry `fields` (for example `{ job: id }`). */
  child(fields: LogFields): Logger;
  /** A logger whose every serialized line passes through `redact` (secret masking) before it is written. */
  redacting(redact: (line: string) => string): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  write: (line: string) => void;
  fields?: LogFields;
  now?: () => Date;
}

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(LEVELS, value);
}

export function createLogger(options: LoggerOptions): Logger {
  const min = LEVELS[options.level ?? "info"];
  const now = options.now ?? (() => new Date());
  const make = (base: LogFields, redact: (line: string) => string): Logger => {
    const log = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LEVELS[level] < min) return;
      const entry: LogFields = { level, msg, time: now().toISOString(), ...base, ...fields };
      for (const [key, value] of Object.entries(entry)) {
        if (value instanceof Error) entry[key] = errorFields(value);
      }
      options.write(redact(`${JSON.stringify(entry)}\n`));
    };
    return {
      debug: (msg, fields) => log("debug", msg, fields),
      info: (msg, fields) => log("info", msg, fields),
      warn: (msg, fields) => log("warn", msg, fields),
      error: (msg, fields) => log("error", msg, fields),
      child: (fields) => make({ ...base, ...fields }, redact),
      redacting: (more) => make(base, (line) => more(redact(line))),
    };
  };
  return make(options.fields ?? {}, (line) => line);
}

/** A logger that drops everything (for library callers that want silence). */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });

function errorFields(error: Error): LogFields {
  const code = (error as { code?: unknown }).code;
  return { name: error.name, message: error.message, ...(code === undefined ? {} : { code }) };
}
