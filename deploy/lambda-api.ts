import { LambdaClient } from "@aws-sdk/client-lambda";
import { DeployError } from "./errors.ts";

export interface LambdaClientOptions {
  /** Default: the SDK's chain (AWS_REGION, the profile). */
  region?: string;
  /** Attempts per call, retries of throttling and transient errors included (the SDK's standard mode, backoff with jitter). */
  maxAttempts: number;
  /** How long one HTTP request may take (ms): the smoke invocation needs up to the function's timeout. */
  requestTimeoutMs: number;
}

/**
 * A Lambda client for the deploy command: credentials and endpoint from the SDK's usual chain
 * (`AWS_PROFILE`, `AWS_ENDPOINT_URL_LAMBDA`...), throttling (`TooManyRequestsException`) and
 * transient failures retried up to `maxAttempts` times with backoff.
 */
export function createLambdaClient(options: LambdaClientOptions): LambdaClient {
  return new LambdaClient({
    ...(options.region !== undefined ? { region: options.region } : {}),
    maxAttempts: options.maxAttempts,
    retryMode: "standard",
    requestHandler: { requestTimeout: options.requestTimeoutMs, connectionTimeout: 10_000 },
  });
}

/** What IAM action a call needs, for the hint on AccessDeniedException. */
const ACTIONS: Record<string, string> = {
  GetFunction: "lambda:GetFunction",
  GetFunctionConfiguration: "lambda:GetFunctionConfiguration",
  UpdateFunctionCode: "lambda:UpdateFunctionCode",
  PublishVersion: "lambda:PublishVersion",
  GetAlias: "lambda:GetAlias",
  CreateAlias: "lambda:CreateAlias",
  UpdateAlias: "lambda:UpdateAlias",
  Invoke: "lambda:InvokeFunction",
};

export interface AwsFailure {
  name: string;
  message: string;
  status: number | undefined;
}

/** The parts of an SDK error a message needs. */
export function awsFailure(error: unknown): AwsFailure {
  const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  return {
    name: e?.name ?? "Error",
    message: e?.message ?? String(error),
    status: e?.$metadata?.httpStatusCode,
  };
}

export function isAwsError(error: unknown, ...names: string[]): boolean {
  return names.includes(awsFailure(error).name);
}

/**
 * An SDK error as a DeployError (DEPLOY_ERR_AWS) naming the call and the likely cause: a missing
 * permission, no credentials or region, a function that does not exist.
 */
export function awsError(operation: string, target: string, error: unknown): DeployError {
  if (error instanceof DeployError) return error;
  const failure = awsFailure(error);
  let hint = "";
  if (failure.name === "AccessDeniedException" || failure.status === 403) {
    hint = `; the deploying role needs ${ACTIONS[operation] ?? `lambda:${operation}`} on ${target} (docs/deploy.md, "IAM for deploying")`;
  } else if (
    failure.name === "CredentialsProviderError" ||
    /Could not load credentials/i.test(failure.message)
  ) {
    hint = "; no AWS credentials found (AWS_PROFILE, AWS_ACCESS_KEY_ID..., or an instance/task role)";
  } else if (/Region is missing/i.test(failure.message)) {
    hint = "; give --region or set AWS_REGION";
  } else if (failure.name === "TooManyRequestsException") {
    hint = "; still throttled after the retries (raise --max-attempts, or deploy fewer functions at once)";
  } else if (failure.name === "ResourceNotFoundException") {
    hint = "; deploy the stack first (`npx osls deploy`), or check --region and the function name";
  }
  return new DeployError(
    "DEPLOY_ERR_AWS",
    `${operation} ${target} failed: ${failure.name}: ${failure.message}${hint}`,
    { cause: error },
  );
}
