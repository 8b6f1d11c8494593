import type { Logger } from "../logger.ts";
import type { CloudWatchSettings } from "./cloudwatch/settings.ts";
import {
  type CloudWatchSink,
  type CloudWatchSinkSummary,
  type CreateCloudWatchSinkOptions,
  createCloudWatchSink,
} from "./cloudwatch/sink.ts";
import { JobLogLines } from "./job-log-lines.ts";

/** Where the job's log is copied, as announced in `hello` and the Lambda summary. */
export interface JobLogLocation {
  region: string;
  group: string;
  stream: string;
  url: string | null;
}

/** A CloudWatch copy of the job's log: lines go in at once; the SDK loads in the background. */
export interface JobLogCopy {
  location: JobLogLocation;
  lines: JobLogLines;
  /** Flushes and closes within `timeoutMs`; null when the sink never started. */
  close(timeoutMs: number): Promise<CloudWatchSinkSummary | null>;
}

/**
 * Starts the CloudWatch copy of the job log when the settings turn it on. The SDK loads while the
 * agent connects to its controller; lines written meanwhile are kept (in order, with their
 * times) and handed over once the sink exists. A sink that cannot start is warned about once
 * and never fails the job.
 */
export function openJobLogCopy(
  settings: CloudWatchSettings,
  logger: Logger,
  clientConfig?: CreateCloudWatchSinkOptions["clientConfig"],
): JobLogCopy | undefined {
  if (!settings.enabled || settings.region === null) return undefined;
  const early: { line: string; timestamp: number }[] = [];
  let sink: CloudWatchSink | undefined;
  let failed = false;
  const starting = createCloudWatchSink({
    region: settings.region,
    logGroupName: settings.logGroupName,
    logStreamName: settings.logStreamName,
    flushIntervalMs: settings.flushIntervalMs,
    maxPendingBytes: settings.maxPendingBytes,
    logger,
    ...(clientConfig ? { clientConfig } : {}),
  }).then(
    (started) => {
      sink = started;
      for (const { line, timestamp } of early.splice(0)) started.write(line, timestamp);
      return started;
    },
    (error: unknown) => {
      failed = true;
      logger.warn("the CloudWatch copy of the job log could not start; the job goes on without it", {
        error,
        droppedLines: early.length,
      });
      early.length = 0;
      return undefined;
    },
  );
  const lines = new JobLogLines({
    write: (line, timestamp = Date.now()) => {
      if (sink) sink.write(line, timestamp);
      else if (!failed) early.push({ line, timestamp });
    },
  });
  return {
    location: {
      region: settings.region,
      group: settings.logGroupName,
      stream: settings.logStreamName,
      url: settings.consoleUrl,
    },
    lines,
    close: async (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      });
      const started = await Promise.race([starting, gaveUp]);
      clearTimeout(timer);
      return started ? started.close(timeoutMs) : null;
    },
  };
}
