import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  ArchiveError,
  createLogger,
  deriveAgentSecret,
  isLogLevel,
  type Logger,
} from "../agent-core/index.ts";
import { ControllerClient } from "./client.ts";
import { Controller } from "./controller.ts";
import { ControllerApiError } from "./errors.ts";
import { readJobFile } from "./job-spec.ts";
import type { JobRecord } from "./job-store.ts";
import { LocalProvisioner } from "./provisioner.ts";
import { createRenderer } from "./render.ts";
import { fetchArtifacts, uploadArchive, uploadDirectory } from "./workspace-cli.ts";

export const CLI_EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  platform: 3,
  deadline: 4,
  disk: 5,
  interrupted: 130,
} as const;

export const CLI_HELP = `Usage: controller <command> [options]

The reference controller of the ephemeral build agent (protocol v1).

Commands:
  serve                 Run the controller until SIGINT/SIGTERM.
      --host H            Interface to listen on (default 127.0.0.1).
      --port P            Port (default 8080; 0 picks a free one).
      --data-dir D        Job records and logs (default ./.data). The HMAC key agents'
                          secrets derive from is D/controller.key (or CONTROLLER_KEY).
      --no-provision      Do not launch local agents; wait for agents to connect.
      --log-level L       debug | info | warn | error (default info). Diagnostics go to stderr.
  submit FILE           Submit a job file (YAML or JSON) and follow its log.
      --url U             Controller URL (default $CONTROLLER_URL or http://127.0.0.1:8080/).
      --no-follow         Print the job id and return at once.
      --workspace DIR     Seed the job's workspace with DIR (instead of the job file's
                          \`workspace\`): packed without following links, uploaded, checked.
      --workspace-archive FILE
                          Seed it with a tar archive (tar, tar.gz, tar.br, tar.zst) as it is.
  artifacts JOB         Fetch a job's artifacts and extract them (safely: nothing outside DIR).
      --out DIR           Where to extract them.
      --url U             Controller URL.
  demo [FILE]           Start a controller on a free loopback port with a local provisioner,
                        run FILE (default examples/hello.yml) on a freshly launched agent,
                        show its log live, stop. Exits with the job's status.
      --keep-data         Keep the temporary data directory.
  secret NAME           Print the secret an agent named NAME must present.
      --data-dir D        Where controller.key is (default ./.data).

Exit codes of submit and demo:
  0 job succeeded   1 job failed or cancelled   2 bad usage or job file
  3 platform failure (agent lost, no agent could start, controller unreachable)
  4 deadline        5 disk budget               130 interrupted (the job was cancelled)
`;

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "serve":
        return await serve(rest, env);
      case "submit":
        return await submit(rest, env);
      case "demo":
        return await demo(rest, env);
      case "secret":
        return secret(rest);
      case "artifacts":
        return await artifacts(rest, env);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(CLI_HELP);
        return command === undefined ? CLI_EXIT.usage : CLI_EXIT.ok;
      default:
        process.stderr.write(`controller: unknown command ${JSON.stringify(command)}\n\n${CLI_HELP}`);
        return CLI_EXIT.usage;
    }
  } catch (error) {
    if (error instanceof ControllerApiError) {
      process.stderr.write(`controller: ${error.message}\n`);
      return error.code === "CONTROLLER_ERR_UNREACHABLE" ? CLI_EXIT.platform : CLI_EXIT.usage;
    }
    if (error instanceof TypeError && (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`controller: ${error.message}\n\n${CLI_HELP}`);
      return CLI_EXIT.usage;
    }
    throw error;
  }
}

function stderrLogger(level: string | undefined): Logger {
  const chosen = level ?? "info";
  if (!isLogLevel(chosen))
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `Expected --log-level to be one of debug, info, warn, error, got ${JSON.stringify(chosen)}`,
    );
  return createLogger({
    level: chosen,
    write: (line) => process.stderr.write(line),
    fields: { component: "controller" },
  });
}

/** The container entrypoint bundle that sits beside this CLI bundle in dist/. */
function entrypointCommand(env: NodeJS.ProcessEnv): string[] {
  const path =
    env.AGENT_ENTRYPOINT ?? join(dirname(fileURLToPath(import.meta.url)), "container-entrypoint.mjs");
  if (!existsSync(path)) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `the agent bundle ${path} is missing: run \`npm run build\` first (or set AGENT_ENTRYPOINT)`,
    );
  }
  return [process.execPath, path];
}

async function serve(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8080" },
      "data-dir": { type: "string", default: ".data" },
      "no-provision": { type: "boolean", default: false },
      "log-level": { type: "string" },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `Expected --port to be an integer from 0 to 65535, got ${JSON.stringify(values.port)}`,
    );
  }
  const dataDir = resolve(values["data-dir"]);
  const logger = stderrLogger(values["log-level"] ?? env.CONTROLLER_LOG_LEVEL);
  const provisioner = values["no-provision"]
    ? undefined
    : new LocalProvisioner({ command: entrypointCommand(env), logDir: join(dataDir, "agents") });
  const controller = await Controller.start({
    dataDir,
    host: values.host,
    port,
    logger,
    ...(env.CONTROLLER_KEY ? { key: env.CONTROLLER_KEY } : {}),
    ...(provisioner ? { provisioner } : {}),
  });
  process.stdout.write(`controller listening on ${controller.url} (data: ${dataDir})\n`);
  const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
    process.once("SIGINT", () => resolveSignal("SIGINT"));
    process.once("SIGTERM", () => resolveSignal("SIGTERM"));
  });
  logger.info("stopping", { signal });
  await controller.stop();
  return CLI_EXIT.ok;
}

async function submit(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      "no-follow": { type: "boolean", default: false },
      workspace: { type: "string" },
      "workspace-archive": { type: "string" },
    },
  });
  if (positionals.length !== 1) {
    process.stderr.write(`controller submit: expected one job file, got ${positionals.length}\n`);
    return CLI_EXIT.usage;
  }
  if (values.workspace !== undefined && values["workspace-archive"] !== undefined) {
    process.stderr.write("controller submit: give --workspace DIR or --workspace-archive FILE, not both\n");
    return CLI_EXIT.usage;
  }
  const client = new ControllerClient(values.url ?? env.CONTROLLER_URL ?? "http://127.0.0.1:8080/");
  const file = positionals[0]!;
  const submission = await withUploadedWorkspace(
    client,
    await readJobFile(file),
    dirname(resolve(file)),
    { dir: values.workspace, archive: values["workspace-archive"] },
    stderrLogger(env.CONTROLLER_LOG_LEVEL ?? "warn"),
  );
  const job = await client.submit(submission);
  if (values["no-follow"]) {
    process.stdout.write(`${job.id}\n`);
    return CLI_EXIT.ok;
  }
  return followToTerminal(client, job);
}

/**
 * Uploads the job's workspace, when it names one (a directory relative to the job file) or the
 * command line does (`--workspace DIR` relative to the working directory, `--workspace-archive`),
 * and returns the submission with `workspace: { upload: <id> }`.
 */
async function withUploadedWorkspace(
  client: ControllerClient,
  submission: unknown,
  jobDir: string,
  given: { dir: string | undefined; archive: string | undefined },
  logger: Logger,
): Promise<unknown> {
  if (typeof submission !== "object" || submission === null || Array.isArray(submission)) return submission;
  const fields = submission as Record<string, unknown>;
  const declared = fields.workspace;
  let upload: { id: string; bytes: number; entries: number } | undefined;
  if (given.archive !== undefined) upload = await uploadArchive(client, given.archive);
  else if (given.dir !== undefined) upload = await uploadDirectory(client, given.dir, [], logger);
  else if (typeof declared === "string")
    upload = await uploadDirectory(client, resolve(jobDir, declared), [], logger);
  else if (typeof declared === "object" && declared !== null && "path" in declared) {
    const { path, exclude } = declared as { path: unknown; exclude?: unknown };
    if (typeof path === "string") {
      const patterns = Array.isArray(exclude)
        ? exclude.filter((p): p is string => typeof p === "string")
        : [];
      upload = await uploadDirectory(client, resolve(jobDir, path), patterns, logger);
    }
  }
  if (upload === undefined) return submission;
  process.stderr.write(`workspace uploaded: ${upload.entries} entries, ${upload.bytes} bytes\n`);
  return { ...fields, workspace: { upload: upload.id } };
}

/** `artifacts JOB --out DIR`: fetches the job's artifacts and extracts them safely. */
async function artifacts(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { url: { type: "string" }, out: { type: "string" } },
  });
  if (positionals.length !== 1 || values.out === undefined) {
    process.stderr.write("controller artifacts: expected a job id and --out DIR\n");
    return CLI_EXIT.usage;
  }
  const client = new ControllerClient(values.url ?? env.CONTROLLER_URL ?? "http://127.0.0.1:8080/");
  try {
    const summary = await fetchArtifacts(client, positionals[0]!, values.out);
    process.stdout.write(
      `${summary.entries} entries (${summary.contentBytes} bytes) extracted to ${resolve(values.out)}, sha256 ${summary.digest.sha256} checked\n`,
    );
    return CLI_EXIT.ok;
  } catch (error) {
    if (error instanceof ArchiveError) {
      process.stderr.write(`controller artifacts: ${error.code}: ${error.message}\n`);
      return CLI_EXIT.failed;
    }
    throw error;
  }
}

async function demo(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { "keep-data": { type: "boolean", default: false } },
  });
  const file = positionals[0] ?? "examples/hello.yml";
  const submission = await readJobFile(file);
  const dataDir = mkdtempSync(join(tmpdir(), "agent-demo-"));
  const provisioner = new LocalProvisioner({
    command: entrypointCommand(env),
    logDir: join(dataDir, "agents"),
  });
  const controller = await Controller.start({
    dataDir,
    provisioner,
    logger: stderrLogger(env.CONTROLLER_LOG_LEVEL ?? "warn"),
  });
  const out = (text: string) => process.stdout.write(text);
  try {
    out(`controller listening on ${controller.url} (data: ${dataDir})\n`);
    const client = new ControllerClient(controller.url);
    const job = await client.submit(
      await withUploadedWorkspace(
        client,
        submission,
        dirname(resolve(file)),
        { dir: undefined, archive: undefined },
        stderrLogger(env.CONTROLLER_LOG_LEVEL ?? "warn"),
      ),
    );
    out(`submitted ${file} as job ${job.id}; launching a local agent...\n`);
    const code = await followToTerminal(client, job);
    const record = await client.get(job.id);
    const where = values["keep-data"]
      ? `diagnostics kept in ${join(dataDir, "agents")}`
      : "run with --keep-data to keep its diagnostics";
    out(`agent: ${record.agent?.name ?? "none"} (${where})\n`);
    const artifacts = record.artifacts;
    if (artifacts?.status === "stored") {
      out(
        `artifacts: ${artifacts.entries} entries, ${artifacts.bytes} bytes, sha256 ${artifacts.sha256.slice(0, 16)}...\n`,
      );
    } else if (artifacts?.status === "failed") {
      out(`artifacts refused: ${artifacts.code}: ${artifacts.message}\n`);
    }
    return code;
  } finally {
    await controller.stop();
    if (!values["keep-data"]) rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Follows a job's events to the terminal; Ctrl-C cancels the job. Resolves with the CLI exit code. */
async function followToTerminal(client: ControllerClient, job: JobRecord): Promise<number> {
  const render = createRenderer({
    write: (text) => process.stdout.write(text),
    color: process.stdout.isTTY === true,
  });
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    process.stderr.write("\ncancelling the job...\n");
    void client.cancel(job.id).catch(() => {});
  };
  process.once("SIGINT", onSigint);
  try {
    for await (const event of client.events(job.id)) render(event);
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
  const record = await client.get(job.id);
  return interrupted ? CLI_EXIT.interrupted : exitCodeForJob(record);
}

/** The CLI exit code for a finished job. */
export function exitCodeForJob(record: JobRecord): number {
  if (record.status === "succeeded") return CLI_EXIT.ok;
  if (record.reason === "deadline") return CLI_EXIT.deadline;
  if (record.reason === "disk") return CLI_EXIT.disk;
  if (record.cause === "platform") return CLI_EXIT.platform;
  return CLI_EXIT.failed;
}

function secret(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { "data-dir": { type: "string", default: ".data" } },
  });
  if (positionals.length !== 1) {
    process.stderr.write("controller secret: expected one agent name\n");
    return CLI_EXIT.usage;
  }
  const keyPath = join(resolve(values["data-dir"]), "controller.key");
  const key =
    process.env.CONTROLLER_KEY ?? (existsSync(keyPath) ? readFileSync(keyPath, "utf8").trim() : undefined);
  if (key === undefined) {
    process.stderr.write(
      `controller secret: no key: set CONTROLLER_KEY or start \`controller serve\` once to create ${keyPath}\n`,
    );
    return CLI_EXIT.usage;
  }
  process.stdout.write(`${deriveAgentSecret(key, positionals[0]!)}\n`);
  return CLI_EXIT.ok;
}
