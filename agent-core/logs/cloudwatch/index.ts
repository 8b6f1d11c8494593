/**
 * The CloudWatch Logs sink: pure batching per the `PutLogEvents` rules, the sink that sends the
 * batches (the AWS SDK is loaded only by `createCloudWatchSink`), and the settings read from the
 * environment. Importing this module loads no SDK and starts nothing.
 */
export {
  type BatcherLimits,
  batchBytes,
  EVENT_OVERHEAD_BYTES,
  LogBatcher,
  type LogEvent,
  MAX_BATCH_BYTES,
  MAX_BATCH_EVENTS,
  MAX_BATCH_SPAN_MS,
  MAX_EVENT_BYTES,
  MAX_EVENT_MESSAGE_BYTES,
  splitMessage,
} from "./batcher.ts";
export {
  type CloudWatchEnv,
  type CloudWatchSettings,
  cloudWatchSettings,
  consoleEncode,
  consoleUrl,
  DEFAULT_FLUSH_INTERVAL_MS,
  DEFAULT_MAX_PENDING_BYTES,
  logGroupProblem,
  logStreamProblem,
  readCloudWatchSettings,
  sanitizeStreamName,
} from "./settings.ts";
export {
  type CloudWatchLogsApi,
  CloudWatchSink,
  type CloudWatchSinkOptions,
  type CloudWatchSinkSummary,
  CloudWatchSinkWarning,
  type CloudWatchSinkWarningCode,
  type CreateCloudWatchSinkOptions,
  createCloudWatchSink,
} from "./sink.ts";
