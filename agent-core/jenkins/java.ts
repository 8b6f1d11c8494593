import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, readFile, realpath } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { AgentError } from "../errors.ts";

/** The Java runtime remoting runs on. */
export interface JavaRuntime {
  /** The java command as found (JENKINS_JAVA_BIN, $JAVA_HOME/bin/java, or on PATH). */
  bin: string;
  /** Where it was found: the variable, or PATH. */
  from: "JENKINS_JAVA_BIN" | "JAVA_HOME" | "PATH";
  /** The runtime's version from its `release` file (`17.0.15+6-...`), null when unknown. */
  version: string | null;
  /** The feature release (17, 21...), null when unknown. */
  major: number | null;
  /** Identifies this exact runtime: a class-data archive is only valid for the runtime that made it. */
  key: string;
}

/** Jenkins mode needs a Java runtime and none was found. Exit code 2 (the image or function is misconfigured). */
export class NoJavaError extends AgentError {
  constructor(message: string) {
    super("AGENT_ERR_NO_JAVA", message);
    this.name = "NoJavaError";
  }
}

/** What to do about a missing Java runtime, named in every NoJavaError. */
export const JAVA_ADVICE =
  "Jenkins mode runs the controller's remoting agent.jar, which needs Java 17 or newer. Use the image's Jenkins variant " +
  "(images/Dockerfile, build target `jenkins`, which has a JRE) for ECS and for Lambda functions deployed from the image; " +
  "a zip-packaged Lambda function needs a Java layer and JAVA_HOME (or JENKINS_JAVA_BIN) pointing into /opt.";

/**
 * Finds java like the jenkins/inbound-agent image does: `JENKINS_JAVA_BIN`, else
 * `$JAVA_HOME/bin/java`, else `java` on `PATH`. Reads the runtime's version from its `release`
 * file (no JVM is started). Throws {@link NoJavaError} naming what was looked at.
 */
export async function findJava(where: {
  javaBin: string | null;
  javaHome: string | null;
  path: string | undefined;
}): Promise<JavaRuntime> {
  if (where.javaBin !== null) {
    if (!(await isExecutable(where.javaBin))) {
      throw new NoJavaError(`JENKINS_JAVA_BIN ${where.javaBin} is not an executable file. ${JAVA_ADVICE}`);
    }
    return describe(where.javaBin, "JENKINS_JAVA_BIN");
  }
  if (where.javaHome !== null) {
    const bin = join(where.javaHome, "bin", "java");
    if (!(await isExecutable(bin))) {
      throw new NoJavaError(
        `JAVA_HOME is ${where.javaHome}, but ${bin} is not an executable file. ${JAVA_ADVICE}`,
      );
    }
    return describe(bin, "JAVA_HOME");
  }
  const dirs = (where.path ?? "").split(delimiter).filter((dir) => dir !== "");
  for (const dir of dirs) {
    const bin = join(dir, "java");
    if (await isExecutable(bin)) return describe(bin, "PATH");
  }
  throw new NoJavaError(
    `no Java runtime found: JENKINS_JAVA_BIN and JAVA_HOME are not set, and no java is on PATH (${dirs.join(delimiter) || "empty"}). ${JAVA_ADVICE}`,
  );
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function describe(bin: string, from: JavaRuntime["from"]): Promise<JavaRuntime> {
  const real = await realpath(bin).catch(() => bin);
  const release = await readFile(join(dirname(dirname(real)), "release"), "utf8").catch(() => "");
  const field = (name: string) => new RegExp(`^${name}="([^"]*)"`, "m").exec(release)?.[1] ?? null;
  const version = field("JAVA_RUNTIME_VERSION") ?? field("JAVA_VERSION");
  const majorText = /^(?:1\.)?(\d+)/.exec(field("JAVA_VERSION") ?? version ?? "")?.[1];
  return {
    bin,
    from,
    version,
    major: majorText === undefined ? null : Number(majorText),
    key: createHash("sha256")
      .update(`${real}\n${version ?? "unknown"}`)
      .digest("hex")
      .slice(0, 12),
  };
}
