/** The Lambda handler's public face; the bundle exports `handler`. */
export { fromLambdaEvent, type LambdaLaunch, lambdaEventSchema } from "./event.ts";
export { handler, type InvocationSummary, type LambdaContext } from "./handler.ts";
