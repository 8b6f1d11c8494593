#!/bin/bash
# The image's entrypoint, under tini. Lambda starts the container with AWS_LAMBDA_RUNTIME_API set:
# then the Runtime API loop runs the jnlp-agent-* handler (Lambda's command, if any, is not used).
# Anywhere else (ECS, Fargate, docker run) the container entrypoint runs with the arguments the
# amazon-ecs plugin or the user appends: `-url URL SECRET NAME`, `--help`, ...

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

if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec node /opt/ephemeral-agent/lambda/bootstrap.js
fi
exec node /opt/ephemeral-agent/container-entrypoint.mjs "$@"
