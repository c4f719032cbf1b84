#!/usr/bin/env bash
# Benchmark of `newapi-ops backup` / `restore` against mariadb-dump | zstd, mydumper, the mariadb
# client and myloader, in one run on this machine (not a test; prints a Markdown table).
# The restores are measured against the server's own floor: `LOAD DATA INFILE` of the same rows
# from a file on the server (no client in the way) into the table with its primary key only,
# then the same single `ALTER TABLE logs ADD KEY ...` that `restore` runs. The target: restore
# at most 1.10x that floor, and below myloader.
#
#   scripts/bench-backup.sh [ROWS]      # default 1000000 rows in `logs`
#
# It starts a private MariaDB (a temp dir, a free loopback port, --innodb-buffer-pool-size=1G as
# a MySQL pod with the seed's 4Gi request could have), loads the sandbox's New-API schema, fills
# `logs` with ROWS New-API-shaped rows, then times each tool with /usr/bin/time -v (wall time and
# peak RSS). Every client authenticates as a user with a random password given through a 0600
# defaults file or the NEWAPI_OPS_MYSQL_URL environment variable: never in argv.
# Installs what it needs (mariadb-server, mariadb-client, mydumper, zstd, time) with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${1:-1000000}"
THREADS="${THREADS:-4}"
BUFFER_POOL="${BUFFER_POOL:-1G}"
log() { printf 'bench: %s\n' "$*" >&2; }

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v mydumper >/dev/null 2>&1 || need+=(mydumper)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
PATH="$PATH:/usr/sbin"

log "building newapi-ops (release)"
cargo build --release --quiet
BIN="$PWD/target/release/newapi-ops"

WORK="$(mktemp -d /tmp/newapi-ops-bench.XXXXXX)"
chmod 700 "$WORK"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ROOTUSER=()
[ "$(id -u)" = 0 ] && ROOTUSER=(--user=root)
log "starting MariaDB on 127.0.0.1:$PORT (buffer pool $BUFFER_POOL)"
mariadb-install-db --no-defaults --datadir="$WORK/data" --auth-root-authentication-method=normal \
  --skip-test-db "${ROOTUSER[@]}" >/dev/null 2>&1
mkdir -p "$WORK/tmp"
# start_server: (re)starts MariaDB and waits until it answers. Every restore below starts from a
# freshly started server (empty buffer pool) and page cache, so no tool inherits another's pages.
start_server() {
  mariadbd --no-defaults "${ROOTUSER[@]}" --datadir="$WORK/data" --port="$PORT" --bind-address=127.0.0.1 \
    --socket="$WORK/sock" --pid-file="$WORK/pid" --log-error="$WORK/err.log" --tmpdir="$WORK/tmp" \
    --skip-name-resolve --innodb-buffer-pool-size="$BUFFER_POOL" --max-allowed-packet=64M \
    >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    mariadb --no-defaults -S "$WORK/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "MariaDB did not start: $(tail -5 "$WORK/err.log")"
  exit 1
}
restart_server() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  start_server
}
start_server

PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
ROOT=(mariadb --no-defaults -S "$WORK/sock" -uroot)
"${ROOT[@]}" -e "CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY '$PASSWORD'; GRANT ALL ON *.* TO 'bench'@'127.0.0.1';"
umask 077
for group in client mydumper myloader; do
  printf '[%s]\nuser=bench\npassword=%s\nhost=127.0.0.1\nport=%s\n' "$group" "$PASSWORD" "$PORT"
done > "$WORK/client.cnf"
DEF="--defaults-extra-file=$WORK/client.cnf"
export NEWAPI_OPS_MYSQL_URL="mysql://bench:$PASSWORD@127.0.0.1:$PORT/new-api"

log "loading the schema and $ROWS rows into logs"
"${ROOT[@]}" -e 'CREATE DATABASE `new-api` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'
"${ROOT[@]}" new-api < fixtures/sandbox/newapi-schema.sql
batch=250000
done_rows=0
while [ "$done_rows" -lt "$ROWS" ]; do
  lo=$((done_rows + 1000)); hi=$((done_rows + batch + 999)); [ "$hi" -gt $((ROWS + 999)) ] && hi=$((ROWS + 999))
  "${ROOT[@]}" new-api -e "
INSERT INTO logs (id, user_id, created_at, type, content, username, token_name, model_name, quota,
  prompt_tokens, completion_tokens, use_time, is_stream, channel_id, token_id, \`group\`, ip, other)
SELECT seq, 1 + seq % 997, 1731456000 + seq * 3, 2,
  CONCAT('模型倍率 ', 1 + seq % 7, '.00，补全倍率 ', 1 + seq % 3, '.00，分组倍率 1.00'),
  CONCAT('user', seq % 997), CONCAT('token-', seq % 3001),
  ELT(1 + seq % 6, 'gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet-20241022', 'deepseek-chat', 'gemini-1.5-pro', 'qwen-max'),
  seq % 50000, 100 + seq % 4000, 20 + seq % 1500, seq % 30, seq % 2, 1 + seq % 20, 1 + seq % 3001,
  ELT(1 + seq % 3, 'default', 'vip', 'svip'), CONCAT('10.', seq % 250, '.', seq % 199, '.', seq % 251),
  CONCAT('{\"admin_info\":{\"use_channel\":[\"', 1 + seq % 20, '\"]},\"cache_ratio\":1,\"completion_ratio\":', 1 + seq % 3,
         ',\"frt\":', 300 + seq % 2000, ',\"group_ratio\":1,\"model_price\":-1,\"model_ratio\":', 1 + seq % 7,
         ',\"request_id\":\"', MD5(seq), '\"}')
FROM seq_${lo}_to_${hi};"
  done_rows=$((done_rows + batch))
done
"${ROOT[@]}" new-api -e 'ANALYZE TABLE logs' >/dev/null
SQLBYTES=$(mariadb-dump "$DEF" --single-transaction --quick new-api | wc -c)
log "the database dumps to $((SQLBYTES / 1048576)) MiB of SQL"

# time_it NAME CMD...: wall seconds and peak RSS (KiB) of CMD (a shell pipeline if given as one string).
RESULTS="$WORK/results"
: > "$RESULTS"
time_it() {
  local name="$1"; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -v -o "$WORK/time.txt" bash -c "$*" > "$WORK/out.txt" 2> "$WORK/errout.txt" \
    || { log "$name failed:"; cat "$WORK/errout.txt" "$WORK/time.txt" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt" \
    | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
  printf '%s\t%s\t%s\n' "$name" "$wall" "$rss" >> "$RESULTS"
  log "$(printf '%-40s %8.2f s  %7d KiB peak RSS' "$name" "$wall" "$rss")"
}

drop() { "${ROOT[@]}" -e "DROP DATABASE IF EXISTS \`$1\`"; }

log "backups"
time_it "newapi-ops backup (--threads $THREADS)" "'$BIN' -q backup --dir '$WORK/ours' --threads $THREADS"
time_it "mariadb-dump --single-transaction --quick | zstd" \
  "mariadb-dump '$DEF' --single-transaction --quick new-api | zstd -q -3 -o '$WORK/dump.sql.zst'"
mkdir -p "$WORK/mydumper"
time_it "mydumper -t $THREADS -c" "mydumper --defaults-file='$WORK/client.cnf' -t $THREADS -c -B new-api -o '$WORK/mydumper'"
OURS=$(du -sb "$WORK/ours" | cut -f1); DUMPZ=$(stat -c %s "$WORK/dump.sql.zst"); MYD=$(du -sb "$WORK/mydumper" | cut -f1)

log "restores (each on a freshly started server; the copy is checked, then dropped)"
zstd -q -d "$WORK/dump.sql.zst" -o "$WORK/dump.sql"
# check DB: the restored copy's CHECKSUM TABLE and row count, then it is dropped.
check() {
  printf '%s: ' "$1" >&2
  "${ROOT[@]}" -N -e "CHECKSUM TABLE \`$1\`.logs; SELECT COUNT(*) FROM \`$1\`.logs" | tr '\n' ' ' | tee -a "$WORK/checks" >&2
  echo >> "$WORK/checks"; echo >&2
  drop "$1"
}
# The floor: the rows of `logs` in LOAD DATA's format in a file the server reads itself, the table
# created with its primary key only (as `restore` creates it), the secondary keys added in one
# ALTER, with the session settings `restore` uses (unique and foreign-key checks off).
"${ROOT[@]}" -e "SELECT * INTO OUTFILE '$WORK/logs.tsv' CHARACTER SET utf8mb4 FROM \`new-api\`.logs"
"${ROOT[@]}" -N --raw -e 'SHOW CREATE TABLE `new-api`.logs' > "$WORK/logs.ddl"
# Two ways: one statement (one transaction: MariaDB's bulk load into an empty table), and one
# statement per 100,000 rows (the backup's chunks, one transaction each, as `restore` commits);
# the floor is the faster of the two.
mkdir -p "$WORK/chunks"
split -l 100000 -d -a 4 "$WORK/logs.tsv" "$WORK/chunks/logs."
python3 - "$WORK" <<'PY'
import re, sys
work = sys.argv[1]
ddl = open(f"{work}/logs.ddl", encoding="utf-8").read().split("\t", 1)[1].strip()
lines = ddl.split("\n")
keys = [l.strip().rstrip(",") for l in lines if re.match(r"\s+(UNIQUE |FULLTEXT |SPATIAL )?KEY ", l)]
body = [l for l in lines if not re.match(r"\s+(UNIQUE |FULLTEXT |SPATIAL )?KEY ", l)]
# The line before the closing `) ENGINE=...` loses its comma.
body[-2] = body[-2].rstrip(",")
import glob
def floor(name, files):
    open(f"{work}/{name}.sql", "w", encoding="utf-8").write(
        "SET SESSION unique_checks = 0, foreign_key_checks = 0;\n"
        + "\n".join(body) + ";\n"
        + "".join(f"LOAD DATA INFILE '{f}' INTO TABLE logs CHARACTER SET utf8mb4;\n" for f in files)
        + "ALTER TABLE logs " + ", ".join("ADD " + k for k in keys) + ";\n")
floor("floor1", [f"{work}/logs.tsv"])
floor("floorn", sorted(glob.glob(f"{work}/chunks/logs.*")))
PY
# floor NAME LABEL: times one way (the client's -vvv gives each statement's time: the loads', then
# the ALTER's) and prints "load indexes" seconds.
floor_run() {
  restart_server
  "${ROOT[@]}" -e "CREATE DATABASE r_$1 CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
  time_it "$2" "mariadb --no-defaults -S '$WORK/sock' -uroot -vvv r_$1 < '$WORK/$1.sql'"
  grep -Eo '\(([0-9.]+) sec\)' "$WORK/out.txt" | tr -d '()sec ' | tail -n +3 \
    | awk '{ t[NR] = $1 } END { for (i = 1; i < NR; i++) l += t[i]; printf "%.2f %.2f", l, t[NR] }' \
    > "$WORK/phases.$1"
  check "r_$1"
}
floor_run floor1 "floor: server-side LOAD DATA INFILE (one statement) + one ALTER ADD KEY"
floor_run floorn "floor: server-side LOAD DATA INFILE (per 100,000 rows) + one ALTER ADD KEY"
restart_server
time_it "newapi-ops restore (--threads $THREADS)" \
  "'$BIN' -q -o json restore latest --dir '$WORK/ours' --database r_ours --threads $THREADS --yes"
OURS_PHASES=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["phases"]; print(p["load_ms"]/1000, p["indexes_ms"]/1000)' "$WORK/out.txt")
check r_ours
restart_server
time_it "newapi-ops restore --fast-load (--threads $THREADS)" \
  "'$BIN' -q -o json restore latest --dir '$WORK/ours' --database r_fast --threads $THREADS --yes --fast-load"
FAST_PHASES=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["phases"]; print(p["load_ms"]/1000, p["indexes_ms"]/1000)' "$WORK/out.txt")
check r_fast
restart_server
"${ROOT[@]}" -e 'CREATE DATABASE r_client'
time_it "mariadb < dump.sql" "mariadb '$DEF' r_client < '$WORK/dump.sql'"
check r_client
restart_server
time_it "myloader -t $THREADS" "myloader --defaults-file='$WORK/client.cnf' -t $THREADS -d '$WORK/mydumper' -B r_myloader"
check r_myloader
# The restored copies (and the floor's) held the same data.
if [ "$(sed 's/^[^ ]* //' "$WORK/checks" | sort -u | wc -l)" != 1 ]; then
  log "the restored copies differ:"; cat "$WORK/checks" >&2; exit 1
fi

echo "### $ROWS rows in \`logs\` ($((SQLBYTES / 1048576)) MiB of SQL), $(nproc) cores, MariaDB $("${ROOT[@]}" -N -e 'SELECT VERSION()'), buffer pool $BUFFER_POOL"
echo
echo "| run | wall time | peak RSS |"
echo "|---|---:|---:|"
while IFS=$'\t' read -r name wall rss; do
  printf '| %s | %.2f s | %.1f MiB |\n' "${name//|/\\|}" "$wall" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')"
done < "$RESULTS"
echo
wall() { awk -F'\t' -v n="$1" 'index($1, n) == 1 { print $2 }' "$RESULTS"; }
F1=$(wall "floor: server-side LOAD DATA INFILE (one"); FN=$(wall "floor: server-side LOAD DATA INFILE (per")
FLOOR=$(awk -v a="$F1" -v b="$FN" 'BEGIN { print (a < b) ? a : b }')
OURS_T=$(wall "newapi-ops restore (--"); FAST_T=$(wall "newapi-ops restore --fast-load")
MYL=$(wall "myloader"); CLIENT=$(wall "mariadb < dump.sql")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
met() { awk -v a="$1" -v f="$FLOOR" -v m="$MYL" 'BEGIN { print (a <= 1.10 * f && a < m) ? "met" : "not met" }'; }
echo
echo "The floor is the faster of A and B: $FLOOR s."
echo
echo "| restore | wall time | × floor | × myloader | target (≤ 1.10× floor, below myloader) | load / indexes |"
echo "|---|---:|---:|---:|---|---|"
P1=$(cat "$WORK/phases.floor1"); PN=$(cat "$WORK/phases.floorn")
printf '| floor A: LOAD DATA INFILE, one statement, + one ALTER | %.2f s | %s | %s | — | %s s |\n' "$F1" "$(ratio "$F1" "$FLOOR")" "$(ratio "$F1" "$MYL")" "${P1// / s \/ }"
printf '| floor B: LOAD DATA INFILE per 100,000 rows, + one ALTER | %.2f s | %s | %s | — | %s s |\n' "$FN" "$(ratio "$FN" "$FLOOR")" "$(ratio "$FN" "$MYL")" "${PN// / s \/ }"
printf '| newapi-ops restore | %.2f s | %s | %s | %s | %s s |\n' "$OURS_T" "$(ratio "$OURS_T" "$FLOOR")" "$(ratio "$OURS_T" "$MYL")" "$(met "$OURS_T")" "${OURS_PHASES// / s \/ }"
printf '| newapi-ops restore --fast-load | %.2f s | %s | %s | %s | %s s |\n' "$FAST_T" "$(ratio "$FAST_T" "$FLOOR")" "$(ratio "$FAST_T" "$MYL")" "$(met "$FAST_T")" "${FAST_PHASES// / s \/ }"
printf '| mariadb < dump.sql | %.2f s | %s | %s | — | — |\n' "$CLIENT" "$(ratio "$CLIENT" "$FLOOR")" "$(ratio "$CLIENT" "$MYL")"
printf '| myloader -t %s | %.2f s | %s | 1.000 | — | — |\n' "$THREADS" "$MYL" "$(ratio "$MYL" "$FLOOR")"
echo
echo "Sizes: newapi-ops $((OURS / 1048576)) MiB, mariadb-dump | zstd $((DUMPZ / 1048576)) MiB, mydumper -c $((MYD / 1048576)) MiB."
