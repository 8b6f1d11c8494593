/** Where an artifact stream's frames go: the job's outbox, through its flow control. */
export interface ArtifactSink {
  /** Queues one `artifact` frame (sequenced: acknowledged, and sent again after a resume). */
  data(offset: number, data: Buffer): void;
  /** False while the outbox is full: wait for {@link waitForRoom} before the next frame. */
  hasRoom(): boolean;
  waitForRoom(): Promise<void>;
}

/**
 * Sends a tar stream as `artifact` frames of `frameBytes` (the last one shorter), in order from
 * offset 0, pausing whenever the sink is full: the stream is read no faster than the controller
 * acknowledges, so memory stays bounded by the outbox. Resolves with the bytes sent; rejects
 * with the stream's error, or the signal's reason when aborted (what was queued stays queued).
 */
export async function sendArchive(
  stream: AsyncIterable<Buffer>,
  sink: ArtifactSink,
  frameBytes: number,
  signal?: AbortSignal,
): Promise<number> {
  let offset = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const emit = async (data: Buffer) => {
    sink.data(offset, data);
    offset += data.length;
    if (!sink.hasRoom()) await sink.waitForRoom();
    signal?.throwIfAborted();
  };
  signal?.throwIfAborted();
  for await (const chunk of stream) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes < frameBytes) continue;
    const joined = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    let at = 0;
    while (joined.length - at >= frameBytes) {
      await emit(joined.subarray(at, at + frameBytes));
      at += frameBytes;
    }
    pending = at < joined.length ? [joined.subarray(at)] : [];
    pendingBytes = joined.length - at;
  }
  if (pendingBytes > 0) await emit(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes));
  return offset;
}
