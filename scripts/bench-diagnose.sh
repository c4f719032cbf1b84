#!/usr/bin/env bash
# Benchmark (not a test): the full `newapi-ops diagnose` — every component: pods, nodes (with
# metrics.k8s.io), logs, MySQL, Redis, the app, config — against the kubectl command sequence an
# operator types for what kubectl can show of the same (get pods, get events, describe nodes, top
# nodes and pods, the workloads' YAML, logs --previous of each failing pod), in the same run, at
# each size: a namespace `bench` with 1 master, SIZE-11 running slaves that all use 95 % of their
# CPU limit (one shared problem), 10 slaves crash-looping OOMKilled with `Error 1040` in their
# previous log, and MySQL and Redis pods (the sandbox's real MariaDB and Redis behind them).
# Also the peak RSS of diagnose, and the number of findings. Prints a Markdown section per size.
#   scripts/bench-diagnose.sh [RUNS] [SIZES]        defaults: 5 "1000 10000"
#   KUBECTL=0 scripts/bench-diagnose.sh ...           diagnose only (the kubectl side of 10,000
#                                                     pods takes minutes a run)
#
# A simulated node holds 110 pods and `sandbox up` makes at most 64 nodes (7,040 pods): for more,
# the script starts a second kubelet simulator (`newapi-ops sandbox kubelet`, the same program
# `up` starts) with a config of its own for the extra nodes, and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
sizes="${2:-1000 10000}"

KUBEBUILDER_ASSETS="$(scripts/setup.sh --with-kubectl | tail -n 1)"
export KUBEBUILDER_ASSETS
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >&2; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >&2; }
cargo build --release --locked >&2
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/newapi-ops"
kubectl="$KUBEBUILDER_ASSETS/kubectl"
export kubectl

dir=""
extra_pid=""
cleanup() {
  [ -n "$extra_pid" ] && kill "$extra_pid" 2>/dev/null || true
  [ -n "$dir" ] && "$bin" sandbox down --dir "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A second simulator for nodes FIRST..LAST, reusing the sandbox's certificate and backends.
extra_nodes() { # dir first last
  python3 - "$1" "$2" "$3" <<'PY'
import json, socket, sys
d, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = json.load(open(f"{d}/kubelet.json"))
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
c["listen_port"] = port
c["state_dir"] = f"{d}/kubelet-extra"
c["nodes"] = [{"name": f"sandbox-node-{i}", "cpu": "4", "memory": "6147Mi", "pods": "110"}
              for i in range(first, last + 1)]
json.dump(c, open(f"{d}/kubelet-extra.json", "w"))
PY
}

namespace_objects() { # slaves
  local ok=$(( $1 - 11 ))
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: mysql}
spec:
  replicas: 1
  selector: {matchLabels: {app: mysql}}
  template:
    metadata: {labels: {app: mysql}}
    spec: {containers: [{name: mysql, image: "mysql:8.2"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis}
spec:
  replicas: 1
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec: {containers: [{name: redis, image: "redis:7"}]}
---
YAML
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
      annotations:
        sandbox.newapi-ops.io/behavior: $4
        sandbox.newapi-ops.io/previous-log: "[ERR] 2025/11/13 - 10:00:01 | Error 1040: Too many connections"
        sandbox.newapi-ops.io/usage: "cpu=19m,memory=20Mi"
    spec:
      containers:
      - name: new-api
        image: calciumion/new-api:v0.9.0
        env:
        - {name: NODE_TYPE, value: $2}
        - {name: SYNC_FREQUENCY, value: "60"}
        - {name: SQL_DSN, value: "root:123456@tcp(mysql:3306)/new-api"}
        - {name: REDIS_CONN_STRING, value: "redis://redis:6379"}
        - {name: SESSION_SECRET, value: "bench-session-secret"}
        - {name: CRYPTO_SECRET, value: "bench-crypto-secret"}
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 20m, memory: 64Mi}}
---
YAML
  }
  deploy new-api-master master 1 running
  deploy new-api-slave slave "$ok" running
  deploy new-api-slave-bad slave 10 crashloop-oom
}

kubectl_sequence() {
  "$kubectl" get pods -n "$ns" -o wide >/dev/null
  "$kubectl" get events -n "$ns" >/dev/null
  "$kubectl" describe nodes >/dev/null
  "$kubectl" top nodes >/dev/null
  "$kubectl" top pods -n "$ns" >/dev/null
  "$kubectl" get deployments,statefulsets,configmaps -n "$ns" -o yaml >/dev/null
  for p in $("$kubectl" get pods -n "$ns" --no-headers | awk '$3 != "Running" {print $1}'); do
    "$kubectl" logs -n "$ns" "$p" --previous --tail=200 >/dev/null
  done
}
export -f kubectl_sequence

ns=bench
export ns
for size in $sizes; do
  nodes=$(( (size + 150 + 99) / 100 ))   # ~100 pods a node, room for the seed; at least 50
  [ "$nodes" -lt 50 ] && nodes=50
  main_nodes=$(( nodes > 64 ? 64 : nodes ))
  dir="$(mktemp -d /tmp/newapi-ops-bench-XXXX)"
  "$bin" sandbox up --dir "$dir" --nodes "$main_nodes" --timeout 600 >&2
  export KUBECONFIG="$dir/admin.kubeconfig"
  if [ "$nodes" -gt 64 ]; then
    extra_nodes "$dir" 65 "$nodes"
    "$bin" -v sandbox kubelet --config "$dir/kubelet-extra.json" >"$dir/logs/kubelet-extra.log" 2>&1 &
    extra_pid=$!
    for _ in $(seq 1 120); do
      n=$("$kubectl" get nodes --no-headers 2>/dev/null | grep -c ' Ready' || true)
      [ "$n" -ge "$nodes" ] && break
      sleep 1
    done
  fi
  "$kubectl" create namespace "$ns" >/dev/null
  namespace_objects "$size" | "$kubectl" apply -n "$ns" -f - >/dev/null
  echo "bench: waiting for $size New-API pods on $nodes nodes ..." >&2
  want=$(( size + 2 ))
  for _ in $(seq 1 720); do
    n=$("$kubectl" get pods -n "$ns" --no-headers 2>/dev/null | grep -cE 'Running|CrashLoopBackOff' || true)
    [ "$n" -ge "$want" ] && break
    sleep 5
  done
  echo "bench: $n pods up" >&2
  # The metrics server learns the usage of each pod through its watch: wait until diagnose sees
  # every running slave above its limit (one grouped finding).
  slaves=$(( size - 11 ))
  for _ in $(seq 1 120); do
    "$bin" diagnose -n "$ns" -o json > "$dir/report.json" || true
    hot=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(f.get("count",1) for f in r["findings"] if f["check"]=="nodes.pod-cpu-usage"))' "$dir/report.json")
    [ "$hot" -ge "$slaves" ] && break
    sleep 5
  done
  python3 - "$dir/report.json" > "$dir/findings.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = r["findings"]
crash = sum(x.get("count", 1) for x in f if x["check"] == "pods.crashloop")
hot = sum(x.get("count", 1) for x in f if x["check"] == "nodes.pod-cpu-usage")
timeouts = [x["check"] for x in f if x["check"].endswith(".timeout") or x["check"].endswith(".incomplete")]
app = [x["summary"] for x in f if x["check"] in ("app.ok", "app.sampled")]
print(len(f), crash, hot, r["counts"]["critical"], r["counts"]["warning"], ",".join(timeouts) or "none", " / ".join(app), sep="\t")
PY
  IFS=$'\t' read -r nfind crash hot crit warn timeouts app < "$dir/findings.txt"
  echo "bench: $nfind findings; $crash crash-looping pods, $hot slaves above their CPU limit; timeouts: $timeouts" >&2

  r=$runs
  [ "$size" -ge 5000 ] && [ "$r" -gt 3 ] && r=3
  hyperfine -i --warmup 1 --runs "$r" --export-json "$dir/hyperfine.json" -N \
    "$bin diagnose -n $ns -o json" >&2 || true
  if [ "${KUBECTL:-1}" != 0 ]; then
    hyperfine --warmup 1 --runs "$r" --export-json "$dir/hyperfine-kubectl.json" --shell bash \
      "kubectl_sequence" >&2
  else
    echo '{"results": [{"mean": NaN, "min": NaN, "max": NaN}]}' > "$dir/hyperfine-kubectl.json"
  fi
  # Peak RSS (KiB), the largest of 3 runs; the commands exit 1 or 2 here (warnings, critical
  # findings): only the figure counts.
  peak() {
    local best=0 k
    for _ in 1 2 3; do
      /usr/bin/time -f '%M' -o "$dir/rss" "$bin" "$@" >/dev/null 2>&1 || true
      k=$(tail -n 1 "$dir/rss")
      [ "$k" -gt "$best" ] && best=$k
    done
    echo "$best"
  }
  rss=$(peak diagnose -n "$ns" -o json)
  pods_rss=$(peak pods -n "$ns" -o json)
  nodes_rss=$(peak nodes -n "$ns" -o json)
  logs_rss=$(peak logs all -n "$ns" --tail 100)
  logs_lines=$("$bin" logs all -n "$ns" --tail 100 2>/dev/null | wc -l || true)
  echo "bench: peak RSS diagnose $rss KiB, pods $pods_rss, nodes $nodes_rss, logs all $logs_rss ($logs_lines lines)" >&2

  python3 - "$dir/hyperfine.json" "$dir/hyperfine-kubectl.json" "$r" "$size" "$nodes" "$nfind" "$crash" "$hot" "$timeouts" "$rss" "$pods_rss" "$app" "$nodes_rss" "$logs_rss" "$logs_lines" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["results"][0]
peer = json.load(open(sys.argv[2]))["results"][0]
runs, size, nodes, nfind, crash, hot, timeouts, rss, pods_rss, app, nodes_rss, logs_rss, logs_lines = sys.argv[3:16]
ratio = ours["mean"] / peer["mean"]
print(f"## full diagnose vs the kubectl sequence ({int(size):,} pods, {nodes} nodes)\n")
print(f"`scripts/bench-diagnose.sh` — one sandbox (kube-apiserver 1.20.2, {nodes} simulated nodes, metrics.k8s.io served),")
print(f"namespace `bench` with {int(size):,} New-API pods ({crash} crash-looping, {hot} above their CPU limit), MySQL and Redis;")
print(f"{runs} runs each after one warm-up, hyperfine.\n")
print("| command | mean | min | max |")
print("|---|---|---|---|")
print(f"| `newapi-ops diagnose` (every component) | {ours['mean']:.3f} s | {ours['min']:.3f} s | {ours['max']:.3f} s |")
print(f"| kubectl: get pods, get events, describe nodes, top nodes, top pods, get workloads -o yaml, logs --previous × {crash} | {peer['mean']:.3f} s | {peer['min']:.3f} s | {peer['max']:.3f} s |")
print(f"\nRatio: **{ratio:.3f}×** the kubectl sequence (target ≤ 0.25×). Findings: **{nfind}** (target ≤ 60);")
print(f"timeout/incomplete findings: {timeouts}. App: {app}.")
print(f"Peak RSS (largest of 3 runs): diagnose **{int(rss)/1024:.1f} MiB**; pods -o json {int(pods_rss)/1024:.1f} MiB;")
print(f"nodes -o json {int(nodes_rss)/1024:.1f} MiB; logs all --tail 100 {int(logs_rss)/1024:.1f} MiB ({int(logs_lines):,} lines).\n")
PY
  [ -n "$extra_pid" ] && { kill "$extra_pid" 2>/dev/null || true; extra_pid=""; }
  "$bin" sandbox down --dir "$dir" >/dev/null 2>&1 || true
  dir=""
done
