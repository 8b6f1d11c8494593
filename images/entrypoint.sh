#!/bin/bash
# The image's ENTRYPOINT. It starts as the container's PID 1, sets up what the agent needs, then
# replaces itself with tini (`exec`), which runs the agent: tini reaps the orphans of steps (-s:
# also when it is not PID 1, as under Lambda's own init) and forwards SIGTERM to the agent, which
# stops the job gracefully.
#
# Lambda starts the container with AWS_LAMBDA_RUNTIME_API set: then the Runtime API loop runs the
# jnlp-agent-* handler (Lambda's command, if any, is not used). Anywhere else (ECS, Fargate,
# docker run) the container entrypoint runs with the arguments the amazon-ecs plugin or the user
# appends: `-url URL SECRET NAME`, `--help`, ...
#
# Environment: EPHEMERAL_AGENT_DIST, where the bundles are (default /opt/ephemeral-agent; the
# host's tests run this script against dist/).

# The agent's secret stays out of every process above the agent. A job's steps run as the same
# user as the agent and can read /proc/<pid>/environ and /proc/<pid>/cmdline of all of them: the
# environment and arguments each process was started with. tini, started with the container's
# arguments and environment, would keep the secret there for the whole job (the agent overwrites
# only its own copies: container-entrypoint/secret-scrub.ts). So tini and the agent start without
# them: the arguments (wherever the secret is among them: `-url URL SECRET NAME`, `-secret S`,
# `--secret=S`) and the secret's variables go to the agent through an inherited pipe, whose
# descriptor AGENT_LAUNCH_FD names (container-entrypoint/launch-pipe.ts reads it and closes it
# before any step runs; read once, a pipe keeps nothing a step could read again through
# /proc/<pid>/fd). This process's own copy ends with the `exec` below. A pipe needs no writable
# file system (Lambda's and a read-only ECS root are not) and leaves no file behind.
#
# The variables that carry the secret: SECRET_ENV in container-entrypoint/launch-args.ts (a test
# keeps the two lists equal). They are taken first, so that nothing this script starts sees them.
secret_variables=(JENKINS_SECRET SLAVE_NODE_SECRET AGENT_SECRET)
moved=()
for variable in "${secret_variables[@]}"; do
  if [ -n "${!variable+set}" ]; then
    moved+=("$variable=${!variable}")
    unset "$variable"
  fi
done

# A user that /etc/passwd does not list: Lambda runs the image as a user of its own, and so do
# `docker run --user N` and OpenShift. Without an entry, what looks the user up fails (OpenSSH
# exits "No user exists for uid N", so git over ssh; whoami; id -un), and ssh takes ~/.ssh from
# the entry's home, never from $HOME. nss_wrapper gives this container's processes (the agent,
# its steps) a passwd and group file with an entry, in writable storage: the root file system
# may be read-only (Lambda's is), /tmp is not. The entry's home is the steps' HOME: on Lambda the
# handler's per-invocation HOME under its work dir (lambda-handler/event.ts, emptied at every
# invocation), elsewhere $HOME.
add_user_entry() {
  local uid gid dir home
  uid=$(id -u) gid=$(id -g)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/agent-nss.XXXXXX" 2>/dev/null) || {
    echo "ephemeral-agent: uid $uid has no passwd entry and ${TMPDIR:-/tmp} is not writable: ssh will not run" >&2
    return 0
  }
  if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then home="${TMPDIR:-/tmp}/lambda-agent/home"; else home=${HOME:-/}; fi
  cp /etc/passwd "$dir/passwd" && cp /etc/group "$dir/group"
  echo "agent-$uid:x:$uid:$gid:build agent:$home:/bin/bash" >>"$dir/passwd"
  getent group "$gid" >/dev/null || echo "agent-$gid:x:$gid:" >>"$dir/group"
  export NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group"
  export LD_PRELOAD="libnss_wrapper.so${LD_PRELOAD:+ $LD_PRELOAD}"
}
if ! getent passwd "$(id -u)" >/dev/null; then add_user_entry; fi

dist=${EPHEMERAL_AGENT_DIST:-/opt/ephemeral-agent}
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  # On Lambda the secret comes with each invocation's event: the variables are not read there.
  exec tini -s -- node "$dist/lambda/bootstrap.js"
fi
# The pipe's content: the argument count, the arguments, then NAME=VALUE per moved variable, each
# ended by a NUL (neither arguments nor variables can hold one). printf is bash's own: no program
# is started with them. The writer, a subshell (a fork of this process, whose /proc shows what
# this one was started with), ends as soon as the pipe holds it all, or once the agent has read
# what exceeds the pipe's 64 KiB: in either case before any step runs.
exec {launch_fd}< <(printf '%s\0' "$#" "$@" "${moved[@]}")
AGENT_LAUNCH_FD=$launch_fd exec tini -s -- node "$dist/container-entrypoint.mjs"
