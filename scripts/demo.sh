#!/usr/bin/env bash
# The main job on a local sandbox: installs what is missing, builds newapi-ops, starts the sandbox
# (a real Kubernetes control plane with the seed deployment, MariaDB and Redis), looks at it the
# way an operator would, then breaks it (a slave OOMKilled in a crash loop) and diagnoses it.
# The sandbox keeps running afterwards; stop it with `target/release/newapi-ops sandbox down`.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBEBUILDER_ASSETS="$(scripts/setup.sh | tail -n 1)"
export KUBEBUILDER_ASSETS
cargo build --release --locked
bin=target/release/newapi-ops

"$bin" sandbox up
KUBECONFIG="$("$bin" sandbox up -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kubeconfig"])')"
export KUBECONFIG

run() { printf '\n\033[1m$ newapi-ops %s\033[0m\n' "$*"; "$bin" "$@" || printf '(exit code %s)\n' "$?"; }
run pods
run nodes
run diagnose

printf '\n\033[1m$ newapi-ops sandbox fault oom\033[0m   (a slave now runs out of memory at start)\n'
"$bin" sandbox heal >/dev/null
"$bin" sandbox fault oom
for _ in $(seq 1 120); do
  "$bin" pods --role slave -o json | grep -q '"CrashLoopBackOff"' && break
  sleep 0.5
done
run pods
run diagnose
run logs slaves --previous --tail 3

# The guided incident, answered from a file here (in a terminal, just run `newapi-ops incident`):
# pods restarting → the oomkilled runbook on the crashing pod, every step run, the pod deleted
# and re-checked, then the report.
answers="$(mktemp)"
printf 'restarting\noomkilled\n-\nrun\nrun\nrun\nrun\nrun\nrun\ndone\napply\ndemo: the limit is raised next\n' > "$answers"
run incident --answers "$answers" --recheck-for 15s
rm -f "$answers"

printf '\nThe sandbox is still running (with the fault). Try:\n  export KUBECONFIG=%s\n  %s sandbox heal\n  %s sandbox down\n' \
  "$KUBECONFIG" "$bin" "$bin"
