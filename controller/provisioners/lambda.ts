import type { LambdaClient } from "@aws-sdk/client-lambda";
import type { Logger } from "../../agent-core/index.ts";
import { loadLambdaSdk } from "./aws-sdk.ts";
import type { AgentExit, ProvisionedAgent, Provisioner, ProvisionRequest } from "./provisioner.ts";

/** A Lambda template's platform settings (docs/controller.md, "lambda"). */
export interface LambdaSettings {
  /** The function's name or ARN (`jnlp-agent-git-bash`). */
  function: string;
  /** The alias or version invoked (`live`); none invokes `$LATEST`. */
  qualifier?: string;
}

/**
 * The invocation payload: the AWS Lambda Cloud plugin's fields (`url`, `node_secret`,
 * `node_name`), plus this project's `mode: "native"` (the reference controller knows what it is:
 * the agent skips auto mode's request that asks) and `labels` (the handler adds them to the
 * function's own).
 */
export function lambdaPayload(request: ProvisionRequest): Record<string, unknown> {
  return {
    url: request.controllerUrl,
    node_secret: request.secret,
    node_name: request.agentName,
    mode: "native",
    ...(request.labels.length > 0 ? { labels: request.labels } : {}),
  };
}

/**
 * Launches each agent as one asynchronous invocation (`Invoke`, `InvocationType: Event`) of the
 * template's function and qualifier, as the AWS Lambda Cloud plugin does. An asynchronous
 * invocation cannot be watched or stopped: an agent that never connects is found by the
 * controller's connect timeout, and its name is spent, so an invocation that starts late is
 * refused and exits. Throttling (`TooManyRequestsException`) and 5xx answers are retried with
 * backoff by the SDK client's standard retry strategy (`maxAttempts`).
 */
export class LambdaProvisioner implements Provisioner {
  readonly kind = "lambda";
  readonly #client: LambdaClient;
  readonly #settings: LambdaSettings;
  readonly #logger: Logger;

  constructor(client: LambdaClient, settings: LambdaSettings, options: { logger: Logger }) {
    this.#client = client;
    this.#settings = settings;
    this.#logger = options.logger;
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedAgent> {
    const { InvokeCommand } = await loadLambdaSdk();
    const { function: functionName, qualifier } = this.#settings;
    const result = await this.#client.send(
      new InvokeCommand({
        FunctionName: functionName,
        ...(qualifier ? { Qualifier: qualifier } : {}),
        InvocationType: "Event",
        Payload: Buffer.from(JSON.stringify(lambdaPayload(request))),
      }),
    );
    if (result.StatusCode !== 202) {
      throw new Error(
        `Invoke answered status ${result.StatusCode ?? "none"}, expected 202 for an asynchronous invocation`,
      );
    }
    const requestId = result.$metadata.requestId ?? "unknown";
    const target = `${functionName}${qualifier ? `:${qualifier}` : ""}`;
    return {
      ref: `lambda ${target} request ${requestId}`,
      logLocation: `CloudWatch Logs /aws/lambda/${functionName.split(":").at(-1)} (request ${requestId})`,
      exited: new Promise<AgentExit>(() => {}),
      stop: async (reason) => {
        this.#logger.info("an asynchronous Lambda invocation cannot be stopped; its agent name is spent", {
          agent: request.agentName,
          request: requestId,
          reason,
        });
      },
    };
  }

  async close(): Promise<void> {}
}
