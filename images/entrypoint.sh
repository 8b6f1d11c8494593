#!/bin/bash
# The image's entrypoint, under tini. Lambda starts the container with AWS_LAMBDA_RUNTIME_API set:
# then the Runtime API loop runs the jnlp-agent-* handler (Lambda's command, if any, is not used).
# Anywhere else (ECS, Fargate, docker run) the container entrypoint runs with the arguments the
# amazon-ecs plugin or the user appends: `-url URL SECRET NAME`, `--help`, ...
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec node /opt/ephemeral-agent/lambda/bootstrap.js
fi
exec node /opt/ephemeral-agent/container-entrypoint.mjs "$@"
