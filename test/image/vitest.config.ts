import { defineConfig } from "vitest/config";

/** The image tests (`npm run image:test`, which builds the images first): not part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/image/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: "forks",
    // Each file runs containers, a controller and node processes: one at a time on 2 cores.
    maxWorkers: 1,
    fileParallelism: false,
  },
});
