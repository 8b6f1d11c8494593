import type { Outbox } from "./outbox.ts";

/**
 * Backpressure over the job's {@link Outbox}: the step's pipes pause while the outbox is full and
 * resume once acknowledgements bring it down to half. The job channel calls {@link update} after
 * acks, and {@link release} when the job goes on without its controller (nothing will be
 * acknowledged any more, so nothing may wait for it).
 */
export class FlowControl {
  readonly #outbox: Outbox;
  readonly #waiters: (() => void)[] = [];
  #released = false;

  constructor(outbox: Outbox) {
    this.#outbox = outbox;
  }

  /** False while the outbox is full: the producer should pause until {@link waitForRoom} resolves. */
  hasRoom(): boolean {
    return this.#released || this.#outbox.hasRoom;
  }

  /** Resolves once at most half the outbox is used, or flow control was released. */
  waitForRoom(): Promise<void> {
    if (this.#released || this.#outbox.hasHalfRoom) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Wakes the waiters when the outbox has half its room again (after acks, or after the spool failed). */
  update(): void {
    if (this.#outbox.hasHalfRoom) this.#wake();
  }

  /** Never pause again: the job goes on (or ends) without its controller. */
  release(): void {
    this.#released = true;
    this.#wake();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}
