import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bareRepository,
  type GitServer,
  selfSignedCertificate,
  sshKeyPair,
  startGitHttps,
  startGitSsh,
} from "./support/git-servers.ts";
import { type Container, IMAGES, startContainer } from "./support/image.ts";

/**
 * The default image is assembled from a list (images/rootfs.list), not pruned from Debian: these
 * checks run what a build step and the agent need and would miss if the list left it out. Each
 * runs a bash script in the image as its user (uid 1000), against git servers on the host's
 * loopback: smart HTTP over TLS and SSH, served by the host's git.
 */
const containers: Container[] = [];
let dir: string;
let https: GitServer;
let ssh: GitServer;
let caPem: string;
const client = sshKeyPair();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "image-tools-"));
  const repos = join(dir, "repos");
  mkdirSync(repos);
  bareRepository(repos, "app");
  bareRepository(repos, "lib");
  const tls = selfSignedCertificate(dir);
  caPem = tls.cert;
  https = await startGitHttps(repos, tls);
  ssh = await startGitSsh(repos, client.public);
});

afterAll(async () => {
  for (const container of containers) await container.remove();
  await https?.close();
  await ssh?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `script` with bash in a new container of the default image, `files` written first. */
async function bash(
  script: string,
  options: { user?: string; files?: Record<string, { content: string; mode: number }> } = {},
) {
  const container = await startContainer(IMAGES.default, {
    command: ["/bin/bash", "-c", `set -euo pipefail\n${script}`],
    ...options,
  });
  containers.push(container);
  return container.exited;
}

describe("the default image's tools", () => {
  it("runs a bash step with the coreutils, grep, sed, awk, find, tar, gzip, xz and diff that steps use", async () => {
    const { code, stdout, stderr } = await bash(`
      cd "$(mktemp -d)"
      mkdir -p src/a src/b && printf 'one\\ntwo\\nthree\\n' > src/a/list && cp src/a/list src/b/
      ln -s a/list src/link && test "$(readlink src/link)" = a/list && realpath src/link >/dev/null
      sort -r src/a/list | head -n 1 | tr a-z A-Z            # TWO
      grep -c o src/a/list                                   # 2
      sed -n 's/^t\\(.*\\)/T\\1/p' src/a/list | paste -sd, -   # Two,Three
      awk '{ n += length($0) } END { print "chars", n }' src/a/list
      find src -name list -type f | sort | xargs cat | uniq -c | wc -l
      tar -czf src.tgz src && tar -cJf src.txz src && rm -rf src && tar -xzf src.tgz && tar -tJf src.txz | wc -l
      gzip -k src/a/list && gunzip -c src/a/list.gz | cmp - src/a/list && echo gzip-ok
      diff -u src/a/list src/b/list && echo same
      sha256sum src/a/list | cut -c1-8; md5sum src/a/list | cut -d' ' -f1 | wc -c
      test "$(id -u)" = 1000 && test "$(whoami)" = agent && test "$(getent passwd agent | cut -d: -f6)" = /home/agent
      echo "nproc=$(nproc) date=$(date -u +%Y)" | grep -Eq '^nproc=[0-9]+ date=20[0-9]{2}$' && echo env-ok
      timeout 5 sleep 0.1 && nohup true >/dev/null 2>&1 && echo "$(basename "$(dirname /x/y/z)")"
      du -s . | cut -f1 | grep -Eq '^[0-9]+$' && df -P . >/dev/null && stat -c %s src/a/list
      # (bash's command -v succeeds when any one of several names is found: one name at a time)
      for tool in which hostname env expr seq od truncate base64 mktemp mkfifo install setsid flock getopt envsubst getconf; do
        command -v "$tool" >/dev/null || echo "missing $tool"
      done
      echo tools-ok
      getconf _NPROCESSORS_ONLN | grep -Eq "^[1-9][0-9]*$" && getconf PATH | grep -q /usr/bin && echo getconf-ok
      GREETING=hi envsubst <<<'$GREETING there'
    `);
    expect(code, stderr).toBe(0);
    expect(stdout.split("\n")).toEqual([
      "TWO",
      "2",
      "Two,Three",
      "chars 11",
      "6",
      "6",
      "gzip-ok",
      "same",
      expect.stringMatching(/^[0-9a-f]{8}$/),
      "33",
      "env-ok",
      "y",
      "14",
      "tools-ok",
      "getconf-ok",
      "hi there",
      "",
    ]);
  });

  it("runs node 22 for jobs (node -e), with its own TLS and ICU", async () => {
    const { code, stdout, stderr } = await bash(`
      node -e 'const c = require("node:crypto"); console.log(process.version.split(".")[0], c.createHash("sha256").update("x").digest("hex").slice(0, 8), new Intl.DateTimeFormat("de-DE", { month: "long", timeZone: "UTC" }).format(new Date(0)))'
      echo 'console.log(typeof fetch, typeof WebSocket)' > /tmp/m.mjs && node /tmp/m.mjs
    `);
    expect(code, stderr).toBe(0);
    expect(stdout).toBe("v22 2d711642 Januar\nfunction function\n");
  });

  it("carries the CA bundle, which git's https uses by default and refuses an unknown server against", async () => {
    // As root, the test's CA is added to the image's bundle: git then trusts the server with no
    // option, which shows it reads /etc/ssl/certs/ca-certificates.crt. Before that, it refuses.
    const { code, stdout, stderr } = await bash(
      `
      test "$(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt)" -gt 100 && echo bundle-ok
      if git ls-remote ${https.url}app.git 2>/tmp/err; then echo "trusted an unknown CA"; exit 1; fi
      grep -qi certificate /tmp/err && echo refused
      cat /tmp/ca.pem >> /etc/ssl/certs/ca-certificates.crt
      git ls-remote ${https.url}app.git | grep -c refs/heads/main
    `,
      { user: "0:0", files: { "tmp/ca.pem": { content: caPem, mode: 0o644 } } },
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toBe("bundle-ok\nrefused\n1\n");
  });

  it("clones, commits and pushes over file://, https (smart HTTP) and ssh, with a submodule", async () => {
    const sshCommand = `ssh -i /home/agent/.ssh/id_ed25519 -o UserKnownHostsFile=/home/agent/.ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes`;
    const { code, stdout, stderr } = await bash(
      `
      export GIT_SSL_CAINFO=/home/agent/ca.pem GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.com
      export GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.com
      cd "$(mktemp -d)"
      # https: clone, commit, push, and read the push back
      git clone -q ${https.url}app.git app-https && cd app-https
      echo change > file && git add file && git commit -qm "over https" && git push -q origin main && cd ..
      git ls-remote ${https.url}app.git main | cut -c1-40 > https.head
      # ssh: known_hosts from ssh-keyscan, then clone the pushed commit and push again
      ssh-keyscan -p ${ssh.port} -t ed25519 127.0.0.1 2>/dev/null > /home/agent/.ssh/known_hosts
      GIT_SSH_COMMAND="${sshCommand}" git clone -q ${ssh.url}app.git app-ssh && cd app-ssh
      test "$(git rev-parse HEAD)" = "$(cat ../https.head)" && git log -1 --format=%s
      echo more >> file && git commit -qam "over ssh" && GIT_SSH_COMMAND="${sshCommand}" git push -q origin main
      # a submodule over https (git submodule is a shell script around git's C helpers)
      git -c protocol.file.allow=always submodule --quiet add ${https.url}lib.git lib
      git commit -qm "add lib" && cat lib/README && cd ..
      # file://: a local mirror, a branch, a merge, a tag, a worktree
      git clone -q --bare app-ssh mirror.git && git clone -q file://$PWD/mirror.git app-file && cd app-file
      git checkout -qb topic && echo topic > topic && git add topic && git commit -qm topic && git checkout -q main
      git merge -q --no-ff -m merge topic && git tag v1 && git worktree add -q ../wt topic && git log --oneline | wc -l
      git submodule status 2>&1 | grep -c "lib" ; git stash list | wc -l
    `,
      {
        files: {
          "home/agent/ca.pem": { content: caPem, mode: 0o644 },
          "home/agent/.ssh/id_ed25519": { content: client.private, mode: 0o600 },
        },
      },
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toBe("over https\nhello from lib\n7\n1\n0\n");
  });

  it("holds no apt, dpkg, perl or python, and lists its Debian packages for image scanners", async () => {
    const { code, stdout, stderr } = await bash(`
      for tool in apt-get dpkg perl python3; do if command -v "$tool"; then echo "found $tool"; fi; done
      grep -c '^Package: ' /var/lib/dpkg/status | awk '$1 > 30 { print "status-ok" }'
      grep -A1 '^Package: git$' /var/lib/dpkg/status | grep -c '^Status: install ok installed'
    `);
    expect(code, stderr).toBe(0);
    expect(stdout).toBe("status-ok\n1\n");
  });
});
