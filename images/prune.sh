#!/bin/sh
# Removes from the image's file system what an ephemeral build agent never uses; run once, last,
# in the stage that assembles it. apt and dpkg keep working: an image built FROM this one can
# still `apt-get install` what its jobs need.
set -eu

# The Node base's developer tools and headers: the agent runs self-contained bundles. (`node` stays,
# for the agent and for jobs.)
rm -rf /usr/local/lib/node_modules /usr/local/include/node /usr/local/share/doc /usr/local/share/man \
  /usr/local/share/systemtap /opt/yarn-*
for tool in npm npx corepack yarn yarnpkg; do rm -f "/usr/local/bin/$tool"; done

# git's server side, mail and HTTP-push programs (a build agent clones, fetches and pushes over
# https and ssh), and the second copy of the git binary in git-core.
for program in git-daemon git-http-backend git-http-push git-imap-send git-shell scalar; do
  rm -f "/usr/lib/git-core/$program" "/usr/bin/$program"
done
ln -sf /usr/bin/git /usr/lib/git-core/git

# tini's static twin (the dynamic tini is the entrypoint).
rm -f /usr/bin/tini-static

# What was unpacked before dpkg's excludes applied, package lists, caches and logs.
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian /usr/share/gitweb
find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/lib/dpkg/*-old \
  /var/log/apt /var/log/dpkg.log /var/log/alternatives.log /tmp/* /root/.npm /root/.cache
rm -f /usr/local/sbin/agent-image-prune
