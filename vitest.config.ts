import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The image tests build and run container images: `npm run image:test` (and .ci/run).
    exclude: ["test/image/**", "**/node_modules/**"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    // expect.poll waits for an event (a process started, a log byte stored): 1 s, vitest's default,
    // is shorter than a process start on two cores shared by several test runs. A bound, not a
    // sleep: the poll returns as soon as the event is there.
    expect: { poll: { timeout: 10_000 } },
    hookTimeout: 30_000,
    // Integration tests spawn real processes and mostly wait on them (sockets, timers, exits):
    // on a 2-core machine a third worker fills those waits (issue 16: the suite took 223 s of
    // vitest time with two workers, 163 s with three, on a quiet machine).
    pool: "forks",
    maxWorkers: 3,
  },
});
