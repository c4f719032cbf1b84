#!/usr/bin/env bash
# The main job on a local sandbox: installs what is missing, builds newapi-ops, starts the sandbox
# (a real Kubernetes control plane with the seed deployment, MariaDB and Redis) and looks at it
# the way an operator would. The sandbox keeps running afterwards; stop it with
#   target/release/newapi-ops sandbox down
set -euo pipefail
cd "$(dirname "$0")/.."

KUBEBUILDER_ASSETS="$(scripts/setup.sh | tail -n 1)"
export KUBEBUILDER_ASSETS
cargo build --release --locked
bin=target/release/newapi-ops

"$bin" sandbox up
KUBECONFIG="$("$bin" sandbox up -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kubeconfig"])')"
export KUBECONFIG

run() { printf '\n\033[1m$ newapi-ops %s\033[0m\n' "$*"; "$bin" "$@" || true; }
run pods
run nodes
printf '\nThe sandbox is still running. Try:\n  export KUBECONFIG=%s\n  %s sandbox fault oom    # then: %s pods\n  %s sandbox down\n' \
  "$KUBECONFIG" "$bin" "$bin" "$bin"
