#!/usr/bin/env bash
# Installs everything newapi-ops' sandbox and tests need on a Debian 12 machine, idempotently:
#   - Debian packages: etcd, MariaDB, Redis, runc + umoci (real containers of the tool's image),
#     Go + rsync (to build the control plane);
#   - kube-apiserver, kube-controller-manager, kube-scheduler 1.20.2, built from Debian's
#     `kubernetes` source package into a cache outside the repo (see shared/FACTS.md).
# Prints nothing but progress on stderr; the last line on stdout is the directory holding the
# control-plane binaries (KUBEBUILDER_ASSETS convention: kube-apiserver, etcd, ... side by side).
set -euo pipefail

# --with-kubectl: also build kubectl (the benchmarks compare newapi-ops with it).
WITH_KUBECTL=no
[ "${1:-}" = "--with-kubectl" ] && WITH_KUBECTL=yes

log() { printf 'setup: %s\n' "$*" >&2; }
CACHE="${NEWAPI_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/newapi-ops}"
mkdir -p "$CACHE"
# Everything the installers print goes to one log; the terminal gets progress lines only, and the
# log's last lines when a step fails.
SETUP_LOG="$CACHE/setup.log"
quietly() {
  local what="$1"; shift
  if ! "$@" >>"$SETUP_LOG" 2>&1; then
    log "$what failed; the last lines of $SETUP_LOG:"
    tail -n 25 "$SETUP_LOG" >&2
    exit 1
  fi
}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

K8S_VERSION=1.20.2
BIN="$CACHE/k8s-$K8S_VERSION/bin"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd || need_pkgs+=(etcd-server)
{ have mariadbd || [ -x /usr/sbin/mariadbd ]; } || need_pkgs+=(mariadb-server)
have mariadb || need_pkgs+=(mariadb-client)
have redis-server || need_pkgs+=(redis-server)
have tmux || need_pkgs+=(tmux)
# The sandbox serves metrics.k8s.io from a network namespace of its own (ip netns, veth).
{ have ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } || need_pkgs+=(iproute2)
# Real containers: the sandbox builds the tool's image (scripts/image.sh, with umoci) and its
# kubelet simulator runs pods of it with runc.
have runc || need_pkgs+=(runc)
have umoci || need_pkgs+=(umoci)
# Backup tests: zstd to read chunks by hand, and a Python venv for kubernetes-validate (the
# `backup schedule` manifests are checked against the Kubernetes JSON schemas).
have zstd || need_pkgs+=(zstd)
have python3 || need_pkgs+=(python3)
{ have python3 && python3 -c 'import ensurepip' >/dev/null 2>&1; } || need_pkgs+=(python3-venv)

control_plane_ok() {
  local d="$1"
  [ -x "$d/kube-apiserver" ] && [ -x "$d/kube-controller-manager" ] && [ -x "$d/kube-scheduler" ]
}

kubectl_missing() { [ "$WITH_KUBECTL" = yes ] && [ ! -x "$1/kubectl" ]; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && control_plane_ok "$KUBEBUILDER_ASSETS" && ! kubectl_missing "$KUBEBUILDER_ASSETS"; then
  log "using control-plane binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  BIN="$KUBEBUILDER_ASSETS"
  build=no
elif control_plane_ok "$BIN" && ! kubectl_missing "$BIN"; then
  build=no
else
  build=yes
  have go || need_pkgs+=(golang-go)
  have rsync || need_pkgs+=(rsync)
  have dpkg-source || need_pkgs+=(dpkg-dev)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need_pkgs+=(golang-github-modern-go-reflect2-dev)
  [ -d /usr/share/gocode/src/github.com/json-iterator/go ] || need_pkgs+=(golang-github-json-iterator-go-dev)
fi

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]} (log: $SETUP_LOG)"
  export DEBIAN_FRONTEND=noninteractive
  quietly "apt-get update" $SUDO apt-get update -qq
  quietly "apt-get install" $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
  # The packaged services are not used: the sandbox starts its own instances on free ports.
  for svc in mariadb redis-server etcd; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  log "installing kubernetes-validate into $VENV"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q kubernetes-validate; } >>"$SETUP_LOG" 2>&1 \
    || log "could not install kubernetes-validate (is PyPI reachable?); the schedule manifest test will say so"
fi

if [ "$build" = yes ]; then
  src="$CACHE/src"
  mkdir -p "$src"
  if [ ! -d "$src/kubernetes-$K8S_VERSION" ]; then
    log "fetching Debian's kubernetes $K8S_VERSION source package"
    srclist=/etc/apt/sources.list.d/newapi-ops-deb-src.sources
    if ! grep -rqs 'deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        | $SUDO tee "$srclist" >/dev/null
      quietly "apt-get update" $SUDO apt-get update -qq
    fi
    quietly "apt-get source kubernetes" bash -c "cd '$src' && apt-get source -qq kubernetes"
    dir=$(find "$src" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
    [ "$dir" = "$src/kubernetes-$K8S_VERSION" ] || mv "$dir" "$src/kubernetes-$K8S_VERSION"
  fi
  tree="$src/kubernetes-$K8S_VERSION"
  # Go 1.19 + the vendored reflect2 1.0.1 panics on the API server's first POST: use Debian's newer copies.
  for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "$tree/vendor/$pkg"
    mkdir -p "$tree/vendor/$pkg"
    find "/usr/share/gocode/src/$pkg" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
      -exec cp {} "$tree/vendor/$pkg/" \;
  done
  what="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  bins="kube-apiserver kube-controller-manager kube-scheduler"
  if [ "$WITH_KUBECTL" = yes ]; then what="$what cmd/kubectl"; bins="$bins kubectl"; fi
  log "building $bins (about 7 minutes on 2 cores; log: $SETUP_LOG)"
  start=$(date +%s)
  quietly "building the control plane" bash -c "cd '$tree' && CGO_ENABLED=0 make WHAT='$what'"
  mkdir -p "$BIN"
  for b in $bins; do
    built="$tree/_output/local/bin/linux/$(dpkg --print-architecture)/$b"
    [ -x "$built" ] || built="$(find "$tree/_output" -type f -name "$b" | head -n1)"
    # Copy then rename: a running sandbox may be executing the old binary ("Text file busy").
    cp "$built" "$BIN/.$b.new" && mv -f "$BIN/.$b.new" "$BIN/$b"
  done
  log "control plane built in $(( $(date +%s) - start ))s into $BIN"
fi

# etcd sits beside the control plane, as in envtest's asset directory.
if [ ! -x "$BIN/etcd" ] && [ -w "$BIN" ]; then ln -sf "$(command -v etcd)" "$BIN/etcd"; fi
echo "$BIN"
