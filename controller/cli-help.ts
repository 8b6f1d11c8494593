/** The controller CLI's help texts: one per command, and the overview. */

export const CLI_EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  platform: 3,
  deadline: 4,
  disk: 5,
  interrupted: 130,
} as const;

/** What each exit code of `submit` and `demo` means (the help text and the README say this). */
export const CLI_EXIT_MEANINGS: Readonly<Record<keyof typeof CLI_EXIT, string>> = {
  ok: "the job succeeded (or: help, version, secret printed)",
  failed: "the job failed or was cancelled: its own commands failed (cause: user)",
  usage: "bad usage, option or job file; the controller refused the request",
  platform: "platform failure: agent lost, no agent could start, controller unreachable",
  deadline: "the platform's deadline stopped the job",
  disk: "a step went over the disk budget",
  interrupted: "interrupted by Ctrl-C (the job was cancelled)",
};

export type CommandName = "serve" | "submit" | "demo" | "secret" | "artifacts";

const EXIT_TEXT = `Exit codes:\n${Object.entries(CLI_EXIT)
  .map(([name, code]) => `  ${String(code).padStart(3)}  ${CLI_EXIT_MEANINGS[name as keyof typeof CLI_EXIT]}`)
  .join("\n")}\n`;

const ENVIRONMENT = `Environment:
  NO_COLOR            Set (not empty): no colours. FORCE_COLOR=1 forces them, FORCE_COLOR=0 turns them off.
`;

export const COMMAND_HELP: Readonly<Record<CommandName, string>> = {
  serve: `Usage: controller serve [options]

Runs the controller until SIGINT or SIGTERM: the agents' WebSocket endpoint, the HTTP API and
the web view (http://HOST:PORT/). Unfinished jobs survive a restart: their agents resume.

Options:
  --config F          Controller config (YAML or JSON): clouds, launch templates and labels
                      (Lambda, ECS/Fargate, local), retry policy, log cap (docs/controller.md).
                      Without it, one local template launches the container entrypoint.
  --host H            Interface to listen on (default 127.0.0.1; or the config's listen.host).
  --port P            Port (default 8080; 0 picks a free one; or the config's listen.port).
  --data-dir D        Job records and logs (default ./.data; or the config's dataDir). The HMAC
                      key agents' secrets derive from is D/controller.key (or CONTROLLER_KEY).
  --no-provision      Launch no agents; wait for agents to connect.
  --log-level L       debug | info | warn | error (default info). Diagnostics go to stderr.
  --token-file F      The API token (at least 16 characters) is the contents of F. With a
                      token, the API and the web view need it; agents keep their HMAC secrets.
  --insecure          Listen beyond loopback without a token (something else guards the port).
                      Without it, a --host other than loopback needs a token.
  --tls-cert F        Serve HTTPS and WSS with the certificate (chain) in PEM file F...
  --tls-key F         ...and its private key. Agents and clients verify it: for a private CA,
                      give them NODE_EXTRA_CA_CERTS=<CA PEM file> (local agents inherit it).
  -h, --help          Show this help.

Environment:
  CONTROLLER_TOKEN    The API token, when --token-file is not given.
  CONTROLLER_KEY      The HMAC key (instead of D/controller.key).
  CONTROLLER_LOG_LEVEL  The log level when --log-level is not given.
`,
  submit: `Usage: controller submit FILE [options]

Submits a job file (YAML or JSON) and follows its log until it ends; Ctrl-C cancels the job.
A job that fails is summed up at the end: the step that failed, the steps skipped, and why.

Options:
  --url U             Controller URL (default $CONTROLLER_URL or http://127.0.0.1:8080/).
  --no-follow         Print the job id and return at once.
  --json              Print no log: the job's record (as GET /api/v1/jobs/ID answers it) as one
                      line of JSON on stdout, once the job ended (with --no-follow, at once).
                      Exit codes are the same; errors go to stderr.
  --token-file F      Send the API token in file F (when the controller asks for one).
  --workspace DIR     Seed the job's workspace with DIR (instead of the job file's
                      \`workspace\`, a directory relative to the job file): packed without
                      following links, uploaded and checked before the job is submitted.
  --workspace-archive FILE
                      Seed it with a tar archive as it is (tar, tar.gz, tar.br, tar.zst).
  -h, --help          Show this help.

${ENVIRONMENT}  CONTROLLER_URL      The controller URL when --url is not given.
  CONTROLLER_TOKEN    The API token, when --token-file is not given.
  NODE_EXTRA_CA_CERTS A PEM file of CAs to trust beyond the system's (a private CA's https URL).

${EXIT_TEXT}`,
  demo: `Usage: controller demo [FILE] [options]

Starts a controller on a free loopback port with a local provisioner, runs FILE (default
examples/hello.yml) on a freshly launched agent, shows its log live, and stops. Exits with the
job's status.

Options:
  --keep-data         Keep the temporary data directory (agent diagnostics, records, logs).
  -h, --help          Show this help.

${ENVIRONMENT}
${EXIT_TEXT}`,
  artifacts: `Usage: controller artifacts JOB --out DIR [options]

Fetches a job's artifacts and extracts them into DIR with the agent's safe extraction (nothing
lands outside DIR, no link leaves it), checking the SHA-256 the controller stored them with.
A refused archive exits 1 with its AGENT_ERR_ARCHIVE_* code and the entry.

Options:
  --out DIR           Where to extract them (created when missing).
  --url U             Controller URL (default $CONTROLLER_URL or http://127.0.0.1:8080/).
  --token-file F      Send the API token in file F (when the controller asks for one).
  --json              Print what was extracted as one line of JSON: entries, contentBytes, dir,
                      sha256.
  -h, --help          Show this help.

Environment:
  CONTROLLER_URL      The controller URL when --url is not given.
  CONTROLLER_TOKEN    The API token, when --token-file is not given.
`,
  secret: `Usage: controller secret NAME [options]

Prints the secret an agent named NAME must present: HMAC-SHA256(controller key, NAME) in hex.

Options:
  --data-dir D        Where controller.key is (default ./.data).
  -h, --help          Show this help.

Environment:
  CONTROLLER_KEY      The HMAC key (instead of D/controller.key).
`,
};

export const CLI_HELP = `Usage: controller <command> [options]

The reference controller of the ephemeral build agent (protocol v1).

Commands:
  serve               Run the controller: agents' endpoint, HTTP API and web view.
  submit FILE         Submit a job file (YAML or JSON) and follow its log.
  demo [FILE]         Run FILE on a throwaway controller and a freshly launched local agent.
  secret NAME         Print the secret an agent named NAME must present.
  artifacts JOB       Fetch a job's artifacts into --out DIR, safely extracted and checked.
  help [COMMAND]      Show this help, or a command's.

Options:
  -h, --help          Show help (also after a command: controller submit --help).
  -V, --version       Print the version.

${EXIT_TEXT}`;
