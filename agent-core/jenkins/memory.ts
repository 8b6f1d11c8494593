import { readFileSync } from "node:fs";
import { totalmem } from "node:os";

const CGROUP_LIMITS = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"];

/**
 * The memory this process may use, in MB: the container's cgroup limit (ECS task or container
 * memory) when there is one, else the machine's. (On Lambda the wrapper passes the function's
 * memory instead, from `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.)
 */
export function memoryMb(): number {
  const machine = totalmem();
  for (const path of CGROUP_LIMITS) {
    let text: string;
    try {
      text = readFileSync(path, "utf8").trim();
    } catch {
      continue;
    }
    const bytes = Number(text);
    // "max", or v1's "no limit" (a huge number): the machine's memory is the limit.
    if (Number.isFinite(bytes) && bytes > 0 && bytes < machine) return Math.floor(bytes / 1_048_576);
  }
  return Math.floor(machine / 1_048_576);
}
