#!/usr/bin/env bash
# Benchmark (not a test): the Kubernetes part of `newapi-ops diagnose` against the kubectl command
# sequence an operator would type for the same information (get pods, get events, describe nodes,
# logs --previous of each failing pod), in the same run, on a sandbox holding 1,000 New-API pods on
# 50 nodes, 10 of them crash-looping. Prints a Markdown section for BENCHMARKS.md.
#   scripts/bench-diagnose.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"

KUBEBUILDER_ASSETS="$(scripts/setup.sh --with-kubectl | tail -n 1)"
export KUBEBUILDER_ASSETS
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >&2; }
cargo build --release --locked >&2
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/newapi-ops"
kubectl="$KUBEBUILDER_ASSETS/kubectl"

dir="$(mktemp -d /tmp/newapi-ops-bench-XXXX)"
trap '"$bin" sandbox down --dir "$dir" >/dev/null 2>&1 || true' EXIT
"$bin" sandbox up --dir "$dir" --nodes 50 --timeout 300 >&2
export KUBECONFIG="$dir/admin.kubeconfig"

ns=bench
"$kubectl" create namespace "$ns" >/dev/null
deploy() { # name role replicas behavior
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $3
  selector: {matchLabels: {app: new-api, role: $2, d: $1}}
  template:
    metadata:
      labels: {app: new-api, role: $2, d: $1}
      annotations: {sandbox.newapi-ops.io/behavior: $4, sandbox.newapi-ops.io/previous-log: "[ERR] 2025/11/13 - 10:00:01 | Error 1040: Too many connections"}
    spec:
      containers:
      - name: new-api
        image: calciumion/new-api:v0.9.0
        env: [{name: NODE_TYPE, value: $2}, {name: SYNC_FREQUENCY, value: "60"}]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
---
YAML
}
{ deploy new-api-master master 1 running; deploy new-api-slave slave 989 running; deploy new-api-slave-bad slave 10 crashloop-oom; } \
  | "$kubectl" apply -n "$ns" -f - >/dev/null
echo "bench: waiting for 1,000 pods ..." >&2
for _ in $(seq 1 600); do
  n=$("$kubectl" get pods -n "$ns" --no-headers 2>/dev/null | grep -cE 'Running|CrashLoopBackOff' || true)
  [ "$n" -ge 1000 ] && break
  sleep 1
done
echo "bench: $n pods up" >&2

kubectl_sequence() {
  "$kubectl" get pods -n "$ns" -o wide >/dev/null
  "$kubectl" get events -n "$ns" >/dev/null
  "$kubectl" describe nodes >/dev/null
  for p in $("$kubectl" get pods -n "$ns" --no-headers | awk '$3 != "Running" {print $1}'); do
    "$kubectl" logs -n "$ns" "$p" --previous --tail=200 >/dev/null
  done
}
export -f kubectl_sequence
export kubectl ns

# Both must see the same thing: 10 crash-looping pods.
"$bin" diagnose -n "$ns" --only pods,nodes,logs -o json > "$dir/report.json" || true
crashing=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for f in r["findings"] if f["check"]=="pods.crashloop"))' "$dir/report.json")
echo "bench: diagnose reports $crashing crash-looping pods" >&2

hyperfine -i --warmup 1 --runs "$runs" --export-json "$dir/hyperfine.json" -N \
  "$bin diagnose -n $ns --only pods,nodes,logs -o json" >&2 || true
hyperfine --warmup 1 --runs "$runs" --export-json "$dir/hyperfine-kubectl.json" --shell bash \
  "kubectl_sequence" >&2

python3 - "$dir/hyperfine.json" "$dir/hyperfine-kubectl.json" "$runs" "$crashing" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["results"][0]
peer = json.load(open(sys.argv[2]))["results"][0]
runs, crashing = sys.argv[3], sys.argv[4]
r = ours["mean"] / peer["mean"]
print("## diagnose vs the kubectl sequence (1,000 pods, 50 nodes)\n")
print("`scripts/bench-diagnose.sh` — one sandbox (kube-apiserver 1.20.2, 50 simulated nodes), namespace `bench`")
print(f"with 1,000 New-API pods of which {crashing} crash-loop; {runs} runs each after one warm-up, hyperfine.\n")
print("| command | mean | min | max |")
print("|---|---|---|---|")
print(f"| `newapi-ops diagnose --only pods,nodes,logs` | {ours['mean']:.3f} s | {ours['min']:.3f} s | {ours['max']:.3f} s |")
print(f"| kubectl: get pods, get events, describe nodes, logs --previous × {crashing} | {peer['mean']:.3f} s | {peer['min']:.3f} s | {peer['max']:.3f} s |")
print(f"\nRatio: **{r:.3f}×** the kubectl sequence's wall time (target ≤ 0.25×); diagnose mean {ours['mean']:.3f} s (target ≤ 1.5 s).")
PY
