#!/bin/bash
# Assembles an image's file system in DEST from what LIST names (images/rootfs.list), in the
# Dockerfile's stages where the packages are installed:
#
#   rootfs.sh LIST DEST
#
# DEST gets: the listed packages' files and paths (docs, man pages and translations left out, the
# copyright files kept), the shared libraries every program there loads (ldd's closure, with their
# packages' copyright files), node stripped of its symbol table, /etc/passwd and /etc/group (root,
# the agent user), the dynamic loader's cache, the merged-/usr links, empty /tmp and /home/agent,
# and a dpkg status file naming every package something was taken from, so that image scanners
# (ECR, Trivy, Grype) see the image's Debian packages and versions.
#
# Environment:
#   EXTRA_PACKAGES    more `package` lines (space-separated names)
#   RECORD_STATUS     a file of dpkg status stanzas to add to the status file, for what was built
#                     from packages rather than copied (the JDK of the jlink runtime)
#   AGENT_UID, AGENT_GID   the agent user (1000:1000)
#   PRESENT           the file system of the image this one is a layer on (the default image's,
#                     for the jenkins target): DEST then gets only what PRESENT lacks, with the
#                     status file and the loader's cache of the two together, and no users or node.
set -euo pipefail
list=$1 dest=$2
uid=${AGENT_UID:-1000} gid=${AGENT_GID:-1000}
present_root=${PRESENT:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

die() {
  echo "rootfs.sh: $*" >&2
  exit 1
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

packages=() paths=() drops=()
while read -r kind value rest; do
  case "$kind" in
    "" | "#"*) continue ;;
  esac
  [ -n "$value" ] && [ -z "$rest" ] || die "$list: expected 'KIND VALUE', got '$kind $value $rest'"
  case "$kind" in
    package) packages+=("$value") ;;
    path) paths+=("$value") ;;
    drop) drops+=("$value") ;;
    *) die "$list: unknown kind '$kind' (package, path or drop)" ;;
  esac
done <"$list"
# shellcheck disable=SC2206 # a space-separated list of package names
extras=(${EXTRA_PACKAGES:-})

# What never goes in: what people read (docs, manual pages, translations), and what ties a
# package into a full system (systemd units, cron, logrotate, completion, bug-report and menu hooks).
skipped() {
  case "$1" in
    /usr/share/doc/*/copyright) return 1 ;;
    /usr/share/doc | /usr/share/doc/* | /usr/share/man | /usr/share/man/* | /usr/share/info | /usr/share/info/*) return 0 ;;
    /usr/share/locale | /usr/share/locale/* | /usr/share/lintian | /usr/share/lintian/* | /usr/share/bug | /usr/share/bug/*) return 0 ;;
    /usr/lib/systemd | /usr/lib/systemd/* | /lib/systemd | /lib/systemd/* | /etc/cron.* | /etc/logrotate.d*) return 0 ;;
    /usr/share/bash-completion | /usr/share/bash-completion/* | /etc/bash_completion.d | /etc/bash_completion.d/*) return 0 ;;
    /usr/share/apport | /usr/share/apport/* | /usr/share/menu | /usr/share/menu/* | /usr/share/doc-base | /usr/share/doc-base/*) return 0 ;;
  esac
  return 1
}

# A path as the merged /usr makes it: dpkg lists /bin/ls, the image holds /usr/bin/ls.
merged() {
  case "$1" in
    /bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
    *) echo "$1" ;;
  esac
}

dropped() {
  local pattern path
  path=$(merged "$1")
  for pattern in "${drops[@]}"; do
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    [[ $path == $pattern ]] && return 0
  done
  return 1
}

declare -A seen=()
files=()
# Adds a path as it is (a symlink stays a symlink) and, for a symlink, what it points to. A path
# under a symlinked directory (/lib -> usr/lib) is taken at its real place; the top-level links
# are made at the end.
add() {
  local path=$1 target dir
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  [ -e "$path" ] || [ -L "$path" ] || die "$path: no such file (listed, or needed by a program)"
  dir=$(dirname "$path")
  if [ "$(realpath "$dir")" != "$dir" ]; then
    add "$(realpath "$dir")/$(basename "$path")"
    return 0
  fi
  files+=("$path")
  if [ -L "$path" ]; then
    target=$(readlink "$path")
    case "$target" in
      /*) add "$target" ;;
      *) add "$(realpath -m "$dir/$target")" ;;
    esac
  fi
}

# Adds a directory itself (its mode and owner, not what it holds), at its real place.
add_dir() {
  local real
  real=$(realpath "$1")
  [ -n "${seen[$real]:-}" ] && return 0
  seen[$real]=1
  files+=("$real")
}

# The listed packages less their drops, then EXTRA_PACKAGES whole.
for pkg in "${packages[@]}" "${extras[@]/#/+}"; do
  whole=
  if [ "${pkg#+}" != "$pkg" ]; then whole=1 pkg=${pkg#+}; fi
  installed "$pkg" || die "package $pkg is not installed (add it to the debian stage's apt-get install, or to EXTRA_PACKAGES)"
  while read -r path; do
    [ "$path" = "/." ] && continue
    skipped "$path" && continue
    [ -z "$whole" ] && dropped "$path" && continue
    if [ -d "$path" ] && [ ! -L "$path" ]; then
      add_dir "$path"
    elif [ -e "$path" ] || [ -L "$path" ]; then
      add "$path"
    fi
  done < <(dpkg-query -L "$pkg")
done
for path in "${paths[@]}"; do
  if [ -d "$path" ] && [ ! -L "$path" ]; then
    add_dir "$path"
    while read -r inner; do
      if [ -d "$inner" ] && [ ! -L "$inner" ]; then add_dir "$inner"; else add "$inner"; fi
    done < <(find "$path" -mindepth 1)
  else
    add "$path"
  fi
done

# Programs written in perl or python: neither is in the image, so they could only fail.
kept=()
for path in "${files[@]}"; do
  if [ -f "$path" ] && [ ! -L "$path" ] && [ -x "$path" ] && head -n 1 "$path" 2>/dev/null | grep -qaE '^#!.*(perl|python)'; then
    echo "rootfs.sh: leaving out $path (a $(head -n 1 "$path" | grep -oaE 'perl|python[0-9.]*') program)" >&2
    continue
  fi
  kept+=("$path")
done
files=("${kept[@]}")

# The shared libraries of every program and library gathered (ldd follows them transitively),
# and node's (its binary is copied stripped below). A library ldd cannot find must be one the
# program loads by its own path from the files gathered (the JVM's libjvm.so).
is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; }
elves=()
[ -z "$present_root" ] && elves+=(/usr/local/bin/node)
declare -A names=()
for path in "${files[@]}"; do
  names[$(basename "$path")]=1
  [ -f "$path" ] && [ ! -L "$path" ] && is_elf "$path" && elves+=("$path")
done
for elf in "${elves[@]}"; do
  ldd "$elf" 2>/dev/null >"$work/ldd" || continue
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$work/ldd" >>"$work/libraries"
  while read -r missing; do
    [ -n "${names[$missing]:-}" ] || die "$elf needs $missing, which is not installed"
  done < <(awk '$3 == "not" { print $1 }' "$work/ldd")
done
sort -u -o "$work/libraries" "$work/libraries"
while read -r library; do add "$library"; done <"$work/libraries"

# The packages something was taken from (for their copyright files and the status file), from
# dpkg's file lists, where a file has the path its package ships (/lib/x86_64-linux-gnu/libc.so.6
# in bookworm, /usr/lib/... in the image).
for list_file in /var/lib/dpkg/info/*.list; do
  pkg=$(basename "$list_file" .list)
  awk -v pkg="${pkg%%:*}" '{ print $0 "\t" pkg }' "$list_file"
done >"$work/index"
for path in "${files[@]}"; do
  if [ ! -d "$path" ]; then echo "$path"; fi
done >"$work/wanted"
awk -F '\t' 'NR == FNR { wanted[$0] = 1; next }
  { path = $1; if (path ~ /^\/(bin|sbin|lib|lib64)\//) path = "/usr" path }
  wanted[path] { print $2 }' "$work/wanted" "$work/index" >"$work/owners"
printf '%s\n' "${packages[@]}" "${extras[@]}" >>"$work/owners"
sort -u -o "$work/owners" "$work/owners"
while read -r pkg; do
  if [ -e "/usr/share/doc/$pkg/copyright" ]; then add "/usr/share/doc/$pkg/copyright"; fi
done <"$work/owners"

# Copy, keeping modes, owners, symlinks and hard links (one tar stream for all); with PRESENT,
# only what it lacks.
mkdir -p "$dest"
for path in "${files[@]}"; do
  if [ -n "$present_root" ] && { [ -e "$present_root$path" ] || [ -L "$present_root$path" ]; }; then
    continue
  fi
  echo "$path"
done | sort -u >"$work/files"
tar --create --no-recursion --numeric-owner --verbatim-files-from --files-from="$work/files" |
  tar --extract --numeric-owner --same-permissions --directory="$dest"

# git's own copy of itself in git-core, as a link: the same program, stored once.
if [ -f "$dest/usr/lib/git-core/git" ] && [ ! -L "$dest/usr/lib/git-core/git" ] &&
  cmp -s "$dest/usr/lib/git-core/git" "$dest/usr/bin/git"; then
  ln -sf ../../bin/git "$dest/usr/lib/git-core/git"
fi

if [ -z "$present_root" ]; then
  # The merged-/usr links of a Debian system (/bin -> usr/bin, ...), as the C library's loader
  # path (/lib64/ld-linux-x86-64.so.2) and #! lines (/bin/sh) expect.
  for link in /bin /sbin /lib /lib32 /lib64 /libx32; do
    if [ -L "$link" ]; then ln -sfn "$(readlink "$link")" "$dest$link"; fi
  done
  # node, without its symbol table (not needed to run: stack traces come from V8).
  install -D -m 0755 /usr/local/bin/node "$dest/usr/local/bin/node"
  strip --strip-unneeded "$dest/usr/local/bin/node"
  # Users and groups: root, the agent (uid 1000 as in the Jenkins images), nobody.
  mkdir -p "$dest/etc"
  cat >"$dest/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
agent:x:$uid:$gid:build agent:/home/agent:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$dest/etc/group" <<EOF
root:x:0:
agent:x:$gid:
nogroup:x:65534:
EOF
  printf '%s\n' /bin/sh /bin/bash /usr/bin/bash >"$dest/etc/shells"
  # What container runtimes bind-mount over (resolv.conf, hostname), or may leave as the image has it.
  printf '%s\n' "127.0.0.1 localhost" "::1 localhost ip6-localhost ip6-loopback" >"$dest/etc/hosts"
  : >"$dest/etc/resolv.conf"
  : >"$dest/etc/hostname"
  ln -sfn /usr/share/zoneinfo/Etc/UTC "$dest/etc/localtime"
  install -d -m 0700 "$dest/root"
  install -d -m 0755 -o "$uid" -g "$gid" "$dest/home/agent"
  install -d -m 1777 "$dest/tmp" "$dest/var/tmp"
  install -d -m 0755 "$dest/dev" "$dest/proc" "$dest/sys" "$dest/run" "$dest/opt" "$dest/usr/local/bin"
fi

# The dynamic loader's cache, for the libraries of DEST (and PRESENT) together.
if [ -n "$present_root" ]; then
  cp -al "$present_root" "$work/merged"
  cp -a "$dest/." "$work/merged/"
  ldconfig -r "$work/merged"
  install -D -m 0644 "$work/merged/etc/ld.so.cache" "$dest/etc/ld.so.cache"
else
  ldconfig -r "$dest"
fi
rm -rf "$dest/var/cache/ldconfig"

# What image scanners read: one stanza per package something was taken from.
mkdir -p "$dest/var/lib/dpkg"
{
  if [ -n "$present_root" ]; then
    cat "$present_root/var/lib/dpkg/status"
    sed -n 's/^Package: //p' "$present_root/var/lib/dpkg/status" | sort -u >"$work/listed"
    comm -23 "$work/owners" "$work/listed" >"$work/owners.new"
    mv "$work/owners.new" "$work/owners"
  fi
  xargs -r dpkg-query -s <"$work/owners"
  if [ -n "${RECORD_STATUS:-}" ]; then cat "$RECORD_STATUS"; fi
} >"$work/status"
mv "$work/status" "$dest/var/lib/dpkg/status"

echo "rootfs.sh: $dest: $(wc -l <"$work/files") paths, $(du -sh "$dest" | cut -f1)" >&2
