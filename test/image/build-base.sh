#!/usr/bin/env bash
# Builds a local stand-in for the image's Node.js base (no container registry is reachable here):
# Debian bookworm from debootstrap (minbase), with the docs, translations and package lists that
# debian:bookworm-slim leaves out removed, plus a node binary and npm laid out as the official
# node:*-bookworm-slim images lay them out (/usr/local/bin/node, /usr/local/lib/node_modules/npm).
#
#   test/image/build-base.sh TAG NODE_BINARY NPM_DIR CACHE_DIR
#
# The debootstrap tree (about 25 s to make) is kept as CACHE_DIR/bookworm-minbase.tar and reused;
# delete it to start from scratch. Needs root, debootstrap and buildah.
set -euo pipefail
tag=$1 node_bin=$2 npm_dir=$3 cache=$4
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"
rootfs_tar=$cache/bookworm-minbase.tar

if [ ! -s "$rootfs_tar" ]; then
  work=$(mktemp -d "$cache/debootstrap.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "image base: debootstrap --variant=minbase bookworm (cached in $rootfs_tar)" >&2
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
  # What debian:bookworm-slim does not carry: downloaded packages, package lists, docs, man pages,
  # translations. The same dpkg excludes as the slim images, for packages installed later.
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* \
    "$work/root/usr/share/man/"* "$work/root/usr/share/info/"* "$work/root/var/log/"*.log
  find "$work/root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$work/root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    'path-include /usr/share/locale/locale.alias' >"$work/root/etc/dpkg/dpkg.cfg.d/docker"
  # The suites a Debian image lists: updates and security fixes too, not only the release.
  printf '%s\n' "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main" \
    >"$work/root/etc/apt/sources.list"
  tar --numeric-owner -C "$work/root" -cf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
  rm -rf "$work"
  trap - EXIT
fi

ctr=$(buildah from scratch)
cleanup() { buildah rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mnt=$(buildah mount "$ctr")
tar --numeric-owner -C "$mnt" -xf "$rootfs_tar"
install -D -m 0755 "$node_bin" "$mnt/usr/local/bin/node"
mkdir -p "$mnt/usr/local/lib/node_modules"
cp -a "$npm_dir" "$mnt/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
buildah umount "$ctr" >/dev/null
node_version=$("$node_bin" --version)
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="${node_version#v}" --cmd node \
  --label io.ephemeral-agent.test-base="debootstrap minbase bookworm + node $node_version" "$ctr"
buildah commit --quiet "$ctr" "$tag" >/dev/null
echo "image base: built $tag (node $node_version)" >&2
