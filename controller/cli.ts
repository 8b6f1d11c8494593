import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ParseArgsConfig, parseArgs } from "node:util";
import {
  AGENT_VERSION,
  ArchiveError,
  createLogger,
  deriveAgentSecret,
  isLogLevel,
  isLoopbackHost,
  type Logger,
} from "../agent-core/index.ts";
import { CLI_EXIT, CLI_HELP, COMMAND_HELP, type CommandName } from "./cli-help.ts";
import { ControllerClient } from "./client.ts";
import { buildTemplates, parseControllerConfig, readControllerConfig } from "./config.ts";
import { Controller } from "./controller.ts";
import { ControllerApiError } from "./errors.ts";
import type { JobRecord } from "./job-record.ts";
import { readJobFile } from "./job-spec.ts";
import { LocalProvisioner } from "./provisioners/local.ts";
import { colorEnabled, createRenderer, paint, renderOutcome } from "./render.ts";
import { defaultWebDir, webViewRoutes } from "./web-assets.ts";
import { fetchArtifacts, uploadArchive, uploadDirectory } from "./workspace-cli.ts";

export { CLI_EXIT, CLI_HELP };

const COMMANDS: Readonly<Record<CommandName, (argv: string[], env: NodeJS.ProcessEnv) => Promise<number>>> = {
  serve,
  submit,
  demo,
  secret: async (argv, env) => secret(argv, env),
  artifacts,
};

const isCommand = (name: string | undefined): name is CommandName =>
  name !== undefined && Object.hasOwn(COMMAND_HELP, name);

/** A command line that cannot be run as given: reported with the command's name and a pointer to its help. */
class UsageError extends Error {
  readonly command: CommandName | undefined;
  constructor(command: CommandName | undefined, message: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/**
 * Runs the CLI; resolves with the exit code (see `CLI_EXIT`). Help goes to stdout with exit 0; a
 * usage error names the command and points to its `--help`, exit 2.
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv;
  const out = (text: string) => process.stdout.write(text);
  try {
    if (command === "--version" || command === "-V" || command === "version") {
      out(`${AGENT_VERSION}\n`);
      return CLI_EXIT.ok;
    }
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      const topic = command === "help" ? rest[0] : undefined;
      if (topic !== undefined && !isCommand(topic))
        throw new UsageError(undefined, `no command ${JSON.stringify(topic)}`);
      out(topic === undefined ? CLI_HELP : COMMAND_HELP[topic]);
      return command === undefined ? CLI_EXIT.usage : CLI_EXIT.ok;
    }
    if (!isCommand(command)) throw new UsageError(undefined, `unknown command ${JSON.stringify(command)}`);
    if (rest.includes("--help") || rest.includes("-h")) {
      out(COMMAND_HELP[command]);
      return CLI_EXIT.ok;
    }
    return await COMMANDS[command](rest, env);
  } catch (error) {
    if (error instanceof UsageError) {
      const name = error.command === undefined ? "controller" : `controller ${error.command}`;
      const help = error.command === undefined ? "controller --help" : `controller ${error.command} --help`;
      process.stderr.write(`${name}: ${error.message}\nRun \`${help}\` for usage.\n`);
      return CLI_EXIT.usage;
    }
    if (error instanceof ControllerApiError) {
      const hint =
        error.code === "CONTROLLER_ERR_UNAUTHORIZED"
          ? " (the CLI sends CONTROLLER_TOKEN, or the contents of --token-file)"
          : "";
      process.stderr.write(`controller: ${error.message}${hint}\n`);
      return error.code === "CONTROLLER_ERR_UNREACHABLE" ? CLI_EXIT.platform : CLI_EXIT.usage;
    }
    throw error;
  }
}

/** `parseArgs` for `command`, its errors turned into a UsageError in plain words. */
function parse<T extends ParseArgsConfig["options"]>(
  command: CommandName,
  argv: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (!code?.startsWith("ERR_PARSE_ARGS")) throw error;
    const message = (error as Error).message;
    const unknown = /^Unknown option '([^']+)'/.exec(message);
    const positional = /^Unexpected argument '([^']+)'/.exec(message);
    throw new UsageError(
      command,
      unknown
        ? `unknown option ${unknown[1]}`
        : positional
          ? `unexpected argument ${JSON.stringify(positional[1])}`
          : message.replace(/\.$/, ""),
    );
  }
}

function stderrLogger(command: CommandName, level: string | undefined): Logger {
  const chosen = level ?? "info";
  if (!isLogLevel(chosen))
    throw new UsageError(
      command,
      `Expected --log-level (or CONTROLLER_LOG_LEVEL) to be one of debug, info, warn, error, got ${JSON.stringify(chosen)}`,
    );
  return createLogger({
    level: chosen,
    write: (line) => process.stderr.write(line),
    fields: { component: "controller" },
  });
}

/** A file an option names, read whole; a usage error names the option when it cannot be read. */
function readOptionFile(command: CommandName, option: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(command, `cannot read ${option} ${path}: ${(error as Error).message}`);
  }
}

/** The API token: the contents of `--token-file` (trailing whitespace dropped), else CONTROLLER_TOKEN. */
function readToken(
  command: CommandName,
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): string | undefined {
  const token =
    file !== undefined ? readOptionFile(command, "--token-file", file).trimEnd() : env.CONTROLLER_TOKEN;
  return token === "" ? undefined : token;
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
  const { values } = parse("serve", argv, {
    config: { type: "string" },
    host: { type: "string" },
    port: { type: "string" },
    "data-dir": { type: "string" },
    "no-provision": { type: "boolean", default: false },
    "log-level": { type: "string" },
    "token-file": { type: "string" },
    insecure: { type: "boolean", default: false },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
  });
  const config = values.config ? await readControllerConfig(values.config) : parseControllerConfig({});
  const token = readToken("serve", values["token-file"], env);
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined))
    throw new UsageError("serve", "--tls-cert and --tls-key go together: give both or neither");
  const tls =
    values["tls-cert"] !== undefined && values["tls-key"] !== undefined
      ? {
          cert: readOptionFile("serve", "--tls-cert", values["tls-cert"]),
          key: readOptionFile("serve", "--tls-key", values["tls-key"]),
        }
      : undefined;
  const port = values.port === undefined ? (config.listen?.port ?? 8080) : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError(
      "serve",
      `Expected --port to be an integer from 0 to 65535, got ${JSON.stringify(values.port)}`,
    );
  if (values.host !== undefined && values.host.trim() === "")
    throw new UsageError(
      "serve",
      `Expected --host to be a host name or an IP address, got ${JSON.stringify(values.host)}`,
    );
  const dataDir = resolve(values["data-dir"] ?? config.dataDir ?? ".data");
  const logger = stderrLogger("serve", values["log-level"] ?? env.CONTROLLER_LOG_LEVEL);
  const agentLogDir = join(dataDir, "agents");
  const templates = values["no-provision"]
    ? []
    : values.config
      ? await buildTemplates(config, {
          logger,
          defaultLocalCommand: () => entrypointCommand(env),
          agentLogDir,
        })
      : [
          {
            name: "local",
            provisioner: new LocalProvisioner({ command: entrypointCommand(env), logDir: agentLogDir }),
          },
        ];
  const controller = await Controller.start({
    dataDir,
    host: values.host ?? config.listen?.host ?? "127.0.0.1",
    port,
    logger,
    templates,
    ...(config.url ? { agentUrl: config.url } : {}),
    ...(config.listen?.allowedHosts ? { allowedHosts: config.listen.allowedHosts } : {}),
    ...(config.retry ? { retry: config.retry } : {}),
    ...(config.maxLogBytes !== undefined ? { maxLogBytes: config.maxLogBytes } : {}),
    ...(config.maxArtifactBytes !== undefined ? { maxArtifactBytes: config.maxArtifactBytes } : {}),
    ...(config.maxUploadBytes !== undefined ? { maxUploadBytes: config.maxUploadBytes } : {}),
    ...(config.protectedBranches !== undefined ? { protectedBranches: config.protectedBranches } : {}),
    ...(config.connectTimeout !== undefined ? { connectTimeoutMs: config.connectTimeout } : {}),
    ...(config.resumeWindow !== undefined ? { resumeWindowMs: config.resumeWindow } : {}),
    routes: webViewRoutes(defaultWebDir()),
    insecure: values.insecure,
    ...(token !== undefined ? { apiToken: token } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(env.CONTROLLER_KEY ? { key: env.CONTROLLER_KEY } : {}),
  });
  const host = values.host ?? config.listen?.host ?? "127.0.0.1";
  const guard =
    token !== undefined
      ? "API token required"
      : isLoopbackHost(host)
        ? "loopback only"
        : "no API token (--insecure)";
  if (token === undefined && !isLoopbackHost(host))
    logger.warn(
      "listening beyond loopback without an API token (--insecure): whoever reaches this port can run commands on your agents and read every log",
      { host },
    );
  // Listen for the signals before saying the controller is up: whoever reads that line may stop
  // it at once, and a signal without a handler would kill it without a clean stop.
  const stopSignal = new Promise<NodeJS.Signals>((resolveSignal) => {
    process.once("SIGINT", () => resolveSignal("SIGINT"));
    process.once("SIGTERM", () => resolveSignal("SIGTERM"));
  });
  process.stdout.write(`controller listening on ${controller.url} (data: ${dataDir}; ${guard})\n`);
  const signal = await stopSignal;
  logger.info("stopping; unfinished jobs resume at the next start", { signal });
  await controller.stop();
  return CLI_EXIT.ok;
}

async function submit(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(
    "submit",
    argv,
    {
      url: { type: "string" },
      "no-follow": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "token-file": { type: "string" },
      workspace: { type: "string" },
      "workspace-archive": { type: "string" },
    },
    true,
  );
  if (positionals.length !== 1)
    throw new UsageError("submit", `expected one job file, got ${positionals.length} arguments`);
  if (values.workspace !== undefined && values["workspace-archive"] !== undefined)
    throw new UsageError("submit", "give --workspace DIR or --workspace-archive FILE, not both");
  const token = readToken("submit", values["token-file"], env);
  const client = new ControllerClient(values.url ?? env.CONTROLLER_URL ?? "http://127.0.0.1:8080/", {
    ...(token !== undefined ? { token } : {}),
  });
  const file = positionals[0]!;
  const submission = await withUploadedWorkspace(
    client,
    await readJobFile(file),
    dirname(resolve(file)),
    { dir: values.workspace, archive: values["workspace-archive"] },
    stderrLogger("submit", env.CONTROLLER_LOG_LEVEL ?? "warn"),
  );
  const job = await client.submit(submission);
  if (values["no-follow"]) {
    process.stdout.write(values.json ? `${JSON.stringify(job)}\n` : `${job.id}\n`);
    return CLI_EXIT.ok;
  }
  return values.json ? awaitJobRecord(client, job) : followToTerminal(client, job, env);
}

/**
 * `submit --json`: waits for the job to end without showing its log, then prints its record
 * (the API's `GET /api/v1/jobs/:id`) as one line of JSON. Ctrl-C cancels the job, as when
 * following. Exits like `submit`.
 */
async function awaitJobRecord(client: ControllerClient, job: JobRecord): Promise<number> {
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    void client.cancel(job.id).catch(() => {});
  };
  process.once("SIGINT", onSigint);
  try {
    for await (const _event of client.events(job.id)) {
      // The stream ends when the job does.
    }
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
  const record = await client.get(job.id);
  process.stdout.write(`${JSON.stringify(record)}\n`);
  return interrupted ? CLI_EXIT.interrupted : exitCodeForJob(record);
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
  process.stderr.write(
    `workspace uploaded: ${plural(upload.entries, "entry", "entries")}, ${upload.bytes} bytes\n`,
  );
  return { ...fields, workspace: { upload: upload.id } };
}

/** `artifacts JOB --out DIR`: fetches the job's artifacts and extracts them safely. */
async function artifacts(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(
    "artifacts",
    argv,
    {
      url: { type: "string" },
      out: { type: "string" },
      "token-file": { type: "string" },
      json: { type: "boolean", default: false },
    },
    true,
  );
  if (positionals.length !== 1)
    throw new UsageError("artifacts", `expected one job id, got ${positionals.length} arguments`);
  if (values.out === undefined) throw new UsageError("artifacts", "--out DIR is required");
  const token = readToken("artifacts", values["token-file"], env);
  const client = new ControllerClient(values.url ?? env.CONTROLLER_URL ?? "http://127.0.0.1:8080/", {
    ...(token !== undefined ? { token } : {}),
  });
  try {
    const summary = await fetchArtifacts(client, positionals[0]!, values.out);
    const dir = resolve(values.out);
    process.stdout.write(
      values.json
        ? `${JSON.stringify({ entries: summary.entries, contentBytes: summary.contentBytes, dir, sha256: summary.digest.sha256 })}\n`
        : `${plural(summary.entries, "entry", "entries")} (${summary.contentBytes} bytes) extracted to ${dir}, sha256 ${summary.digest.sha256} checked\n`,
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
  const { values, positionals } = parse(
    "demo",
    argv,
    { "keep-data": { type: "boolean", default: false } },
    true,
  );
  if (positionals.length > 1)
    throw new UsageError("demo", `expected at most one job file, got ${positionals.length} arguments`);
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
    logger: stderrLogger("demo", env.CONTROLLER_LOG_LEVEL ?? "warn"),
    routes: webViewRoutes(defaultWebDir()),
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
        stderrLogger("demo", env.CONTROLLER_LOG_LEVEL ?? "warn"),
      ),
    );
    out(`submitted ${file} as job ${job.id}; launching a local agent...\n`);
    const code = await followToTerminal(client, job, env);
    const record = await client.get(job.id);
    const where = values["keep-data"]
      ? `diagnostics kept in ${join(dataDir, "agents")}`
      : "run with --keep-data to keep its diagnostics";
    out(`agent: ${record.agent?.name ?? "none"} (${where})\n`);
    return code;
  } finally {
    await controller.stop({ endJobs: true });
    if (!values["keep-data"]) rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Follows a job's events to the terminal; Ctrl-C cancels the job. Resolves with the CLI exit code. */
async function followToTerminal(
  client: ControllerClient,
  job: JobRecord,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  const color = colorEnabled(process.stdout, env);
  const render = createRenderer({ write: (text) => process.stdout.write(text), color });
  process.stdout.write(
    `${paint(color, "dim", `--- job ${job.id}: ${client.baseUrl}jobs/${encodeURIComponent(job.id)}`)}\n`,
  );
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
  process.stdout.write(renderOutcome(record, color));
  return interrupted ? CLI_EXIT.interrupted : exitCodeForJob(record);
}

/** "1 entry", "3 entries". */
function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** The CLI exit code for a finished job. */
export function exitCodeForJob(record: JobRecord): number {
  if (record.status === "succeeded") return CLI_EXIT.ok;
  if (record.reason === "deadline") return CLI_EXIT.deadline;
  if (record.reason === "disk") return CLI_EXIT.disk;
  if (record.cause === "platform") return CLI_EXIT.platform;
  return CLI_EXIT.failed;
}

function secret(argv: string[], env: NodeJS.ProcessEnv): number {
  const { values, positionals } = parse(
    "secret",
    argv,
    { "data-dir": { type: "string", default: ".data" } },
    true,
  );
  if (positionals.length !== 1)
    throw new UsageError("secret", `expected one agent name, got ${positionals.length} arguments`);
  const keyPath = join(resolve(values["data-dir"]), "controller.key");
  const key = env.CONTROLLER_KEY ?? (existsSync(keyPath) ? readFileSync(keyPath, "utf8").trim() : undefined);
  if (key === undefined) {
    process.stderr.write(
      `controller secret: no key: set CONTROLLER_KEY or start \`controller serve\` once to create ${keyPath}\n`,
    );
    return CLI_EXIT.usage;
  }
  process.stdout.write(`${deriveAgentSecret(key, positionals[0]!)}\n`);
  return CLI_EXIT.ok;
}
