#!/usr/bin/env bash
# Builds newapi-ops' container image without a daemon and without network: an OCI image layout
# (a directory any OCI tool reads: `skopeo copy oci:DIR:TAG docker-daemon:…`, `podman load`,
# `umoci unpack`), from scratch — no base image:
#
#   /usr/local/bin/newapi-ops            the binary (debug info stripped when `strip` is there)
#   /lib…, /lib64/…                      exactly the shared libraries `ldd` names (glibc, libgcc_s)
#   /etc/ssl/certs/ca-certificates.crt   the host's CA bundle (for HTTPS to an API server)
#   /etc/passwd, /etc/group              root and the non-root user nonroot (65532:65532)
#   /etc/nsswitch.conf                   hosts: files dns (Service names come from /etc/hosts)
#   /home/nonroot (65532, 0700), /tmp (1777)
#
# config: user 65532:65532, entrypoint /usr/local/bin/newapi-ops, no cmd, working directory
# /home/nonroot, env PATH and SSL_CERT_FILE. No shell. The build is reproducible: the same binary
# gives the same digest (file times and the creation time are SOURCE_DATE_EPOCH, default 0).
#
# Usage: scripts/image.sh [--release | --debug | --binary PATH] [--out DIR] [--tag TAG]
#                         [--rootfs DIR] [--no-strip]
#   --release (default) / --debug   cargo build (offline) that profile of the tool without the
#                                   sandbox (--no-default-features) first, and use its binary
#   --binary PATH                   use this binary as it is (what `newapi-ops sandbox up` does)
#   --out DIR                       the OCI layout to write (replaced); default target/image
#   --tag TAG                       the tag; default the binary's version (`newapi-ops --version`)
#   --rootfs DIR                    only write the image's files into DIR (the Containerfile's
#                                   build stage uses this); no umoci needed
#   --no-strip                      keep the binary's debug info
# Progress goes to stderr; stdout gets one line: the manifest digest (sha256:…). The image name
# is newapi-ops:TAG (what the sandbox's kubelet simulator runs for real, see README).
set -euo pipefail

log() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
binary=""
out=""
tag=""
rootfs_only=""
strip_debug=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --debug) profile=debug ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag="$2"; shift ;;
    --rootfs) [ $# -ge 2 ] || die "--rootfs needs a directory"; rootfs_only="$2"; shift ;;
    --no-strip) strip_debug=no ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
for tool in tar ldd; do have "$tool" || missing+=("$tool"); done
[ -n "$rootfs_only" ] || have umoci || missing+=(umoci)
[ "${#missing[@]}" -eq 0 ] || die "missing programs: ${missing[*]} (Debian: apt-get install ${missing[*]/ldd/libc-bin}; scripts/setup.sh installs umoci)"

if [ -z "$binary" ]; then
  # What runs in a cluster has no use for the sandbox: the tool without it, in a target
  # directory of its own (so the features of target/$profile, the tests' binary, do not flip).
  flags=(--locked --offline -p newapi-ops --bin newapi-ops --no-default-features
         --target-dir "$ROOT/target/image-build")
  [ "$profile" = release ] && flags+=(--release)
  log "cargo build ${flags[*]}"
  (cd "$ROOT" && cargo build "${flags[@]}" >&2)
  binary="$ROOT/target/image-build/$profile/newapi-ops"
fi
[ -x "$binary" ] || die "$binary is not an executable file"

if [ -z "$tag" ]; then
  version="$("$binary" --version 2>/dev/null | awk '{print $2}')" || true
  [ -n "$version" ] || die "$binary --version printed no version; pass --tag"
  tag="$version"
fi
case "$tag" in
  *[!A-Za-z0-9_.-]*|[.-]*|"") die "invalid tag $tag" ;;
esac
epoch="${SOURCE_DATE_EPOCH:-0}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/rootfs"
[ -n "$rootfs_only" ] && stage="$rootfs_only"
mkdir -p "$stage/usr/local/bin" "$stage/etc/ssl/certs" "$stage/home/nonroot" "$stage/tmp"

if [ "$strip_debug" = yes ] && have strip; then
  strip --strip-debug -o "$stage/usr/local/bin/newapi-ops" "$binary"
else
  cp "$binary" "$stage/usr/local/bin/newapi-ops"
fi
chmod 0755 "$stage/usr/local/bin/newapi-ops"

# The libraries the dynamic linker loads, and the linker itself, at the paths ldd names.
libs="$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)"
[ -n "$libs" ] || die "ldd names no library for $binary (a static binary needs none: pass it anyway?)"
for lib in $libs; do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done

ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca" ]; then
  cp "$ca" "$stage$ca"
else
  log "warning: $ca is missing (Debian: ca-certificates); the image has no CA bundle"
fi
chmod 0644 "$stage/etc/ssl/certs/"* 2>/dev/null || true
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$stage/etc/group"
printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$stage/etc/nsswitch.conf"
chmod 0644 "$stage/etc/passwd" "$stage/etc/group" "$stage/etc/nsswitch.conf"
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/home/nonroot"

if [ -n "$rootfs_only" ]; then
  # The Containerfile's final stage copies this tree as it is.
  [ "$(id -u)" != 0 ] || chown 65532:65532 "$stage/home/nonroot"
  log "wrote the image's files to $rootfs_only"
  exit 0
fi

# One layer, byte for byte reproducible: sorted, fixed times, numeric owners (root, and nonroot
# for its home directory).
layer="$work/layer.tar"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  --exclude=./home/nonroot -C "$stage" -cf "$layer" .
tar --mtime="@$epoch" --owner=65532 --group=65532 --numeric-owner --no-recursion \
  -C "$stage" -rf "$layer" ./home/nonroot

[ -n "$out" ] || out="$ROOT/target/image"
mkdir -p "$(dirname "$out")"
# Built next to the output, so that putting it in place is a rename.
layout="$(dirname "$out")/.$(basename "$out").new.$$"
trap 'rm -rf "$work" "$layout"' EXIT
image="$layout:$tag"
umoci init --layout "$layout" >&2
umoci new --image "$image" >&2
log "adding the layer ($(du -h "$layer" | cut -f1) uncompressed)"
umoci raw add-layer --image "$image" --history.created "$created" \
  --history.created_by "scripts/image.sh" --history.comment "newapi-ops $tag from scratch" "$layer" >&2
umoci config --image "$image" --created "$created" --no-history \
  --author "newapi-ops scripts/image.sh" \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/newapi-ops \
  --config.workingdir /home/nonroot \
  --config.env PATH=/usr/local/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label org.opencontainers.image.title=newapi-ops \
  --config.label "org.opencontainers.image.version=$tag" \
  --config.label org.opencontainers.image.description="Operate a New-API deployment on Kubernetes" \
  >&2
umoci gc --layout "$layout" >&2

# Replace the output only now that the image is complete.
rm -rf "$out.old"
[ -e "$out" ] && mv "$out" "$out.old"
mv "$layout" "$out"
rm -rf "$out.old"

digest="$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$out/index.json" | head -n1)"
[ -n "$digest" ] || die "no manifest digest in $out/index.json"
log "newapi-ops:$tag in $out ($digest)"
printf '%s\n' "$digest"
