/**
 * After the first SIGTERM/SIGINT, how long the channel may still spend reporting the job's end
 * (resuming a dropped session, the wait for the ack), beyond the step's grace and drain: the
 * process then ends by itself, before a wrapper's last-resort timer (`signalExitMs`). Its own
 * module so that the signal trap does not load the job channel (ws, the workspace download).
 */
export const INTERRUPT_REPORT_MS = 4_000;
