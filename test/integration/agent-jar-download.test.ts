import { readdirSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { askForAgentJar, readJarCache } from "../../agent-core/jenkins/agent-jar.ts";
import { tempDir } from "../support/harness.ts";

const scratch = tempDir("agent-jar-download-");
let url: string;
const server = createServer((_req, res) => {
  // A jar over the agent's limit in the first chunk: the download fails on its first bytes.
  res.writeHead(200, { "X-Jenkins": "2.479.3", "Content-Type": "application/java-archive" });
  res.end(Buffer.alloc(64 * 1024, 1));
});
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  scratch.remove();
});

describe("agent.jar download", () => {
  it("keeps no temp file of a download that fails before its file is open (20 in a row)", async () => {
    const cacheDir = join(scratch.path, "cache");
    for (let i = 0; i < 20; i++) {
      const cache = await readJarCache(cacheDir, url);
      const answer = await askForAgentJar({
        controllerUrl: url,
        cache,
        maxBytes: 1024,
        timeoutMs: 5_000,
        downloadTimeoutMs: 5_000,
        jenkinsOnly: true,
      });
      expect(answer.jar).toBeNull();
      expect(answer.failure).toMatch(/more than the 1024-byte limit/);
      const left = readdirSync(cache.dir).filter((name) => name.endsWith(".tmp"));
      expect(left, `after download ${i + 1}`).toEqual([]);
    }
  });
});
