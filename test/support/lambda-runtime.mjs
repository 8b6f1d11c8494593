// One sandbox of the fake Lambda service (test/support/fake-lambda.ts): a child process that
// loads a function's handler the way the Node.js managed runtime does and runs invocations sent
// over the IPC channel, one at a time, for as long as the sandbox lives (warm reuse: module state
// and the sandbox's /tmp survive between invocations).
//
// Environment (set by the fake): LAMBDA_TASK_ROOT (the code's root), _HANDLER ("path/file.export",
// as in the function's Handler setting), plus the function's own variables and Lambda's reserved ones.
// Messages in:  { type: "invoke", requestId, event, deadlineAt, context: { functionName, ... } }
// Messages out: { type: "ready" } | { type: "init-error", error } |
//               { type: "result", requestId, ok: true, payload } | { type: "result", requestId, ok: false, error }
// where `payload` is the handler's result as JSON text (undefined -> "null") and `error` is
// { errorType, errorMessage, trace }, the shape Lambda returns for a function error.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const EXTENSIONS = [".js", ".mjs", ".cjs"];

function errorShape(error, fallbackType = "Error") {
  if (error instanceof Error) {
    return {
      errorType: error.name || fallbackType,
      errorMessage: error.message,
      trace: String(error.stack ?? "").split("\n"),
    };
  }
  return { errorType: fallbackType, errorMessage: String(error), trace: [] };
}

function send(message) {
  if (process.connected) process.send(message);
}

async function loadHandler() {
  const root = process.env.LAMBDA_TASK_ROOT;
  const spec = process.env._HANDLER ?? "";
  const dot = spec.lastIndexOf(".");
  if (!root || dot <= 0) {
    const error = new Error(`Bad handler ${spec}: expected <module path>.<export name>`);
    error.name = "Runtime.MalformedHandlerName";
    throw error;
  }
  const modulePath = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const file = EXTENSIONS.map((ext) => join(root, modulePath + ext)).find((path) => existsSync(path));
  if (file === undefined) {
    const error = new Error(`Cannot find module '${modulePath}'`);
    error.name = "Runtime.ImportModuleError";
    throw error;
  }
  let loaded;
  try {
    loaded = await import(pathToFileURL(file).href);
  } catch (cause) {
    if (cause instanceof SyntaxError) {
      const error = new Error(`${cause.name}: ${cause.message}`);
      error.name = "Runtime.UserCodeSyntaxError";
      throw error;
    }
    throw cause;
  }
  const handler = loaded[exportName] ?? loaded.default?.[exportName];
  if (typeof handler !== "function") {
    const error = new Error(`${modulePath}.${exportName} is undefined or not exported`);
    error.name = "Runtime.HandlerNotFound";
    throw error;
  }
  return handler;
}

let current;

function settle(requestId, outcome) {
  if (current !== requestId) return;
  current = undefined;
  send({ type: "result", requestId, ...outcome });
}

function succeed(requestId, value) {
  let payload;
  try {
    payload = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    settle(requestId, {
      ok: false,
      error: { ...errorShape(error), errorType: "Runtime.ResponseNotSerializable" },
    });
    return;
  }
  settle(requestId, { ok: true, payload });
}

process.on("uncaughtException", (error) => {
  if (current !== undefined) settle(current, { ok: false, error: errorShape(error) });
  process.exitCode = 129;
  process.disconnect?.();
  setImmediate(() => process.exit(129));
});
process.on("unhandledRejection", (reason) => {
  if (current !== undefined) {
    settle(current, {
      ok: false,
      error: { ...errorShape(reason), errorType: "Runtime.UnhandledPromiseRejection" },
    });
  }
  process.exitCode = 128;
  setImmediate(() => process.exit(128));
});

let handler;
try {
  handler = await loadHandler();
  send({ type: "ready" });
} catch (error) {
  send({ type: "init-error", error: errorShape(error, "Runtime.ImportModuleError") });
  process.disconnect?.();
}

process.on("message", (message) => {
  if (message?.type !== "invoke" || handler === undefined) return;
  const { requestId, event, deadlineAt, context: info } = message;
  current = requestId;
  const context = {
    ...info,
    awsRequestId: requestId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadlineAt - Date.now()),
    done: (error, value) => (error ? context.fail(error) : succeed(requestId, value)),
    succeed: (value) => succeed(requestId, value),
    fail: (error) => settle(requestId, { ok: false, error: errorShape(error) }),
  };
  try {
    // A handler of three parameters takes a callback; otherwise it returns a value or a promise.
    if (handler.length >= 3) {
      handler(event, context, (error, value) => (error ? context.fail(error) : succeed(requestId, value)));
      return;
    }
    Promise.resolve(handler(event, context)).then(
      (value) => succeed(requestId, value),
      (error) => settle(requestId, { ok: false, error: errorShape(error) }),
    );
  } catch (error) {
    settle(requestId, { ok: false, error: errorShape(error) });
  }
});
