import { sdkExports } from "../../agent-core/index.ts";

export type EcsSdk = typeof import("@aws-sdk/client-ecs");
export type LambdaSdk = typeof import("@aws-sdk/client-lambda");

/**
 * `@aws-sdk/client-ecs`, loaded on first use (a controller without ECS templates never parses
 * it), whether run from source or from the bundle, whose split chunks expose only `default`.
 */
export async function loadEcsSdk(): Promise<EcsSdk> {
  return sdkExports(await import("@aws-sdk/client-ecs"), "ECSClient", "@aws-sdk/client-ecs");
}

/** `@aws-sdk/client-lambda`, loaded on first use (see `loadEcsSdk`). */
export async function loadLambdaSdk(): Promise<LambdaSdk> {
  return sdkExports(await import("@aws-sdk/client-lambda"), "LambdaClient", "@aws-sdk/client-lambda");
}
