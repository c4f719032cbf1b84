#!/usr/bin/env bash
# Benchmark (not a test): `newapi-ops bench` against wrk, hey and ab, in the same run, against
# one local nginx (one worker, loopback only) serving a static /api/status, with the same
# connection count; then the open loop at fixed rates, to see how closely it holds them.
# Prints a Markdown table for BENCHMARKS.md. Every load is bounded in time (or count).
#   scripts/bench-load.sh [CONNECTIONS] [SECONDS] [RUNS]
# NEWAPI_OPS_BIN=target/debug/newapi-ops uses that binary instead of building the release one
# (to check the script itself; the figures are the release build's).
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-32}"
secs="${2:-10}"
runs="${3:-3}"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v hey >/dev/null || need+=(hey)
command -v ab >/dev/null || need+=(apache2-utils)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
# With two CPUs or more, nginx gets CPU 0 and the load generators CPU 1 (taskset): the two never
# take each other's core, so the tail measures the tools, not the scheduler (BENCHMARKS.md).
# BENCH_PIN=0 runs unpinned.
server_cpu=(); tool_cpu=()
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0); tool_cpu=(taskset -c 1)
fi
if [ -n "${NEWAPI_OPS_BIN:-}" ]; then
  bin="$NEWAPI_OPS_BIN"
  echo "using $bin (not a release build: the figures are not the ones to record)" >&2
else
  cargo build --release --locked >&2
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/newapi-ops"
fi

# nginx's worker runs as nobody: the directory must be readable by it (mktemp -d is 0700).
dir="$(mktemp -d /tmp/newapi-ops-bench-load-XXXX)"
chmod 755 "$dir"
mkdir -p "$dir/www/api" "$dir/logs"
chmod -R a+rX "$dir/www"
printf '{"success":true,"message":"","data":{"version":"v0.9.0","start_time":1764000000}}' >"$dir/www/api/status"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
user nobody nogroup;
error_log $dir/logs/error.log;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location /api/status { root $dir/www; default_type application/json; }
  }
}
CONF
"${server_cpu[@]}" "$nginx_bin" -c "$dir/nginx.conf" -p "$dir" &
nginx_pid=$!
trap 'kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
url="http://127.0.0.1:$port/api/status"
for _ in $(seq 50); do curl -fsS "$url" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url" >/dev/null

n_requests=$(( conns * 4000 ))   # ab and hey take a count: about as many requests as wrk sends

# Each tool: requests/s, p50 ms, p99 ms (one line, space separated).
run_wrk() {
  local out; out="$("${tool_cpu[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency "$url")"
  local rps p50 p99
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk prints 1.23ms, 456.00us, 1.2s
  python3 -c "
import sys,re
v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v)
n,u=float(m.group(1)),m.group(2)
print(round(n/1000 if u=='us' else n*1000 if u=='s' else n,3))" "$1"
}
run_bench() {
  "${tool_cpu[@]}" "$bin" bench --url "$url" -t1 -c "$conns" -d "${secs}s" --no-watch -q -o json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency"]; print(round(r["requests_per_second"],1), round(l["p50_ms"],3), round(l["p99_ms"],3))'
}
run_hey() {
  local out; out="$("${tool_cpu[@]}" hey -n "$n_requests" -c "$conns" "$url")"
  local rps p50 p99
  rps="$(awk '/Requests\/sec:/ {print $2}' <<<"$out")"
  p50="$(awk '/ 50%% in/ || /50% in/ {print $3}' <<<"$out")"
  p99="$(awk '/99% in/ {print $3}' <<<"$out")"
  python3 -c "print($rps, round(float('$p50')*1000,3), round(float('$p99')*1000,3))"
}
run_ab() {
  local out; out="$("${tool_cpu[@]}" ab -q -k -n "$n_requests" -c "$conns" "$url" 2>/dev/null)"
  local rps p50 p99
  rps="$(awk '/^Requests per second:/ {print $4}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  echo "$rps $p50 $p99"
}

declare -A rps p50 p99
tools=(wrk bench hey ab)
for r in $(seq "$runs"); do
  for t in "${tools[@]}"; do
    read -r a b c <<<"$(run_"$t")"
    echo "run $r $t: $a req/s, p50 $b ms, p99 $c ms" >&2
    rps[$t]+="$a "; p50[$t]+="$b "; p99[$t]+="$c "
  done
done
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" $1; }

echo "### closed loop, one thread, $conns connections, ${secs}s (wrk, bench) or $n_requests requests (hey, ab), median of $runs runs"
echo
echo "| tool | requests/s | p50 | p99 | requests/s vs wrk | p50 vs wrk | p99 vs wrk | issue 15 (bench: ≥ 0.9× wrk, p50/p99 within 20 %) |"
echo "|---|---|---|---|---|---|---|---|"
w_rps="$(median "${rps[wrk]}")"; w_p50="$(median "${p50[wrk]}")"; w_p99="$(median "${p99[wrk]}")"
for t in "${tools[@]}"; do
  m_rps="$(median "${rps[$t]}")"; m_p50="$(median "${p50[$t]}")"; m_p99="$(median "${p99[$t]}")"
  python3 -c "
import sys
t,r,a,b,wr,wa,wb=sys.argv[1],*map(float,sys.argv[2:])
name={'wrk':'wrk 4.1 (-t1)','bench':'newapi-ops bench','hey':'hey 0.1.4','ab':'ab -k (apache2-utils)'}[t]
ok=r/wr>=0.9 and abs(a/wa-1)<=0.2 and abs(b/wb-1)<=0.2
verdict=('met' if ok else 'NOT met') if t=='bench' else ''
print(f'| {name} | {r:,.0f} | {a:.3f} ms | {b:.3f} ms | {r/wr:.2f}× | {a/wa-1:+.0%} | {b/wb-1:+.0%} | {verdict} |')
" "$t" "$m_rps" "$m_p50" "$m_p99" "$w_rps" "$w_p50" "$w_p99"
done
echo

echo "### open loop: the rate asked against the rate held, ${secs}s each"
echo
echo "| --rate | requests | requests/s held | error | p50 | p99 | max send lag | issue 15 (within 2 %) |"
echo "|---|---|---|---|---|---|---|---|"
for rate in 1000 5000 20000; do
  "${tool_cpu[@]}" "$bin" bench --url "$url" -t1 -c "$conns" -d "${secs}s" --rate "$rate" --no-watch -q -o json \
    | python3 -c "
import json,sys
r=json.load(sys.stdin); rate=$rate; l=r['latency']; err=(r['requests_per_second']-rate)/rate
print(f\"| {rate:,} | {r['requests']:,} | {r['requests_per_second']:,.1f} | {err:+.2%} | {l['p50_ms']:.3f} ms | {l['p99_ms']:.3f} ms | {r['max_send_lag_ms']:.1f} ms | {'met' if abs(err) <= 0.02 else 'NOT met'} |\")"
done
