#!/usr/bin/env bash
# The host's own costs, measured in one run on this machine:
#   1. the plugin runtime: compile, cached load, warm call, fresh instance,
#      and `wharf serve` start to ready (wharf bench runtime|startup);
#   2. the embedded store: copy of 10,000 units, listing 10,000 repositories
#      (wharf bench store);
#   3. upload + store of a 1 GiB file through the API (a resumable upload,
#      then a file-type import that hashes and stores it as a blob) against
#      `openssl dgst -sha256` of the same file, with the server's peak RSS;
#   4. import of a `docker save` archive of the same size (8 layers of random
#      bytes) through the API against `openssl dgst -sha256` of the archive,
#      with the server's peak RSS, two ways: a resumable upload imported once
#      complete, and a streaming import (the archive as the request body);
#      and the disk's own durable write speed (`dd conv=fdatasync`), the
#      bound of any store that fsyncs;
#   5. the CLI's import against curl's (issue #24): the same 512 MiB `docker
#      save` archive sent as a streaming import by curl and by `wharf docker
#      repo uploads upload`, alternately, each on a fresh server, several
#      rounds: medians, the ratio CLI / curl, and `dd conv=fdatasync` of the
#      same size in the same run;
#   6. task dispatch: 1,000 tiny tasks, submit → running p50, in-process and
#      through RabbitMQ (skipped when WHARF_BENCH_AMQP_URL is unset).
# Usage: scripts/bench-host.sh [SIZE_MIB]   (default 1024)
#        scripts/bench-host.sh --cli-import  (section 5 alone)
# Section 5 takes WHARF_BENCH_CLI_MIB (512), WHARF_BENCH_CLI_ROUNDS (5) and
# WHARF_CLI_BIN (the wharf binary whose CLI it measures; default the
# server's, WHARF_BIN), to compare another build's CLI against one server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
ONLY_CLI_IMPORT=""
if [ "${1:-}" = --cli-import ]; then ONLY_CLI_IMPORT=1; shift; fi
SIZE_MIB=${1:-1024}
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
WHARF_CLI=${WHARF_CLI_BIN:-$WHARF}
CLI_MIB=${WHARF_BENCH_CLI_MIB:-512}
CLI_ROUNDS=${WHARF_BENCH_CLI_ROUNDS:-5}
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
export WHARF_ADMIN_PASSWORD=bench-admin-password
W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-host.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API=http://127.0.0.1:$PORT/api/v1
start_server() {
    WHARF_LOG=warn "$WHARF" serve --listen "127.0.0.1:$PORT" --data-dir "$W/data-$1" --plugin-dir "$PLUGIN_DIR" "${@:2}" 2> "$W/server-$1.log" &
    PID=$!
    for _ in $(seq 1 200); do curl -sf "$API/status" > /dev/null && { login; return; }; sleep 0.05; done
    echo "server did not start" >&2; cat "$W/server-$1.log" >&2; exit 1
}
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
# Log in once per server: basic auth would cost an argon2 hash per request.
TOKEN=""
login() { TOKEN=$(curl -sf -XPOST -u "admin:$WHARF_ADMIN_PASSWORD" "$API/login" | jq -r .token); }
c() { curl -sf -H "authorization: Bearer $TOKEN" "$@"; }
wait_task() {
    local id=$1 state
    while :; do
        state=$(c "$API/tasks/$id" | jq -r .state)
        case $state in finished) return 0 ;; error|canceled) c "$API/tasks/$id" >&2; return 1 ;; esac
        sleep 0.02
    done
}

# dd's summary of a durable write of $1 MiB: the disk's own speed.
durable_write() { dd if=/dev/zero of="$W/dd" bs=1M count="$1" conv=fdatasync 2>&1 | tail -1; rm -f "$W/dd"; }
# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Section 5: a streaming import of one archive by curl and by the CLI,
# alternately, each into a fresh server (a server that already holds the
# layers would skip storing them), timed from request to ended task.
cli_import() {
    echo "## CLI import against curl (issue #24): ${CLI_MIB} MiB docker save, ${CLI_ROUNDS} rounds"
    scripts/make-docker-save.py "$W/cli.tar" "$CLI_MIB"
    sync
    cat "$W/cli.tar" > /dev/null
    local mib=$(( $(stat -c %s "$W/cli.tar") >> 20 )) round t0 t1 state
    echo "disk before (dd conv=fdatasync): $(durable_write "$CLI_MIB")"
    : > "$W/curl.s"; : > "$W/cli.s"
    for round in $(seq 1 "$CLI_ROUNDS"); do
        start_server "curl-$round"
        c -XPOST "$API/repositories" -H content-type:application/json -d '{"id":"d","content_type":"docker"}' > /dev/null
        t0=$(date +%s.%N)
        state=$(c -XPOST "$API/repositories/d/import" -H content-type:application/x-tar -T "$W/cli.tar" | jq -r .state)
        t1=$(date +%s.%N)
        [ "$state" = finished ] || { echo "curl: streaming import ended $state" >&2; exit 1; }
        stop_server; rm -rf "$W/data-curl-$round"
        echo "$t1 - $t0" | bc -l >> "$W/curl.s"

        start_server "cli-$round"
        c -XPOST "$API/repositories" -H content-type:application/json -d '{"id":"d","content_type":"docker"}' > /dev/null
        t0=$(date +%s.%N)
        XDG_CONFIG_HOME="$W/config" WHARF_TOKEN=$TOKEN "$WHARF_CLI" --server "http://127.0.0.1:$PORT" \
            docker repo uploads upload --repo-id d -f "$W/cli.tar" > /dev/null 2> "$W/cli-$round.log" \
            || { echo "wharf: streaming import failed" >&2; cat "$W/cli-$round.log" >&2; exit 1; }
        t1=$(date +%s.%N)
        stop_server; rm -rf "$W/data-cli-$round"
        echo "$t1 - $t0" | bc -l >> "$W/cli.s"
        printf 'round %d: curl %.2f s, wharf %.2f s\n' "$round" "$(tail -1 "$W/curl.s")" "$(tail -1 "$W/cli.s")"
    done
    echo "disk after (dd conv=fdatasync): $(durable_write "$CLI_MIB")"
    rm -f "$W/cli.tar"
    local curl_s cli_s
    curl_s=$(median < "$W/curl.s"); cli_s=$(median < "$W/cli.s")
    printf 'curl, median of %d:  %.2f s (%.0f MiB/s)\n' "$CLI_ROUNDS" "$curl_s" "$(echo "$mib / $curl_s" | bc -l)"
    printf 'wharf, median of %d: %.2f s (%.0f MiB/s)\n' "$CLI_ROUNDS" "$cli_s" "$(echo "$mib / $cli_s" | bc -l)"
    printf 'wharf / curl:         %.2f (target <= 1.10)\n' "$(echo "$cli_s / $curl_s" | bc -l)"
}
if [ -n "$ONLY_CLI_IMPORT" ]; then cli_import; exit 0; fi

echo "## runtime"
"$WHARF" bench runtime --plugin "$PLUGIN_DIR/docker.wasm"
"$WHARF" bench startup --plugin-dir "$PLUGIN_DIR"
echo "## store"
"$WHARF" bench store

echo "## upload + store of ${SIZE_MIB} MiB"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/big"
sync
cat "$W/big" > /dev/null   # page cache warm for both
t0=$(date +%s.%N); openssl dgst -sha256 "$W/big" > /dev/null; t1=$(date +%s.%N)
openssl_s=$(echo "$t1 - $t0" | bc -l)
start_server upload
c -XPOST "$API/repositories" -H content-type:application/json -d '{"id":"f","content_type":"file"}' > /dev/null
UP=$(c -XPOST "$API/uploads" -H content-type:application/json -d "{\"size\":$((SIZE_MIB << 20))}" | jq -r .id)
t0=$(date +%s.%N)
c -XPUT "$API/uploads/$UP?offset=0" -H content-type:application/octet-stream -T "$W/big" > /dev/null
t1=$(date +%s.%N)
TASK=$(c -XPOST "$API/repositories/f/import" -H content-type:application/json -d "{\"upload_id\":\"$UP\",\"params\":{\"relative_path\":\"big\"}}" | jq -r .id)
wait_task "$TASK"
t2=$(date +%s.%N)
rss_kib=$(grep VmHWM /proc/$PID/status | awk '{print $2}')
stop_server
up_s=$(echo "$t1 - $t0" | bc -l); imp_s=$(echo "$t2 - $t1" | bc -l); tot_s=$(echo "$t2 - $t0" | bc -l)
printf 'openssl dgst -sha256: %.2f s (%.0f MiB/s)\n' "$openssl_s" "$(echo "$SIZE_MIB / $openssl_s" | bc -l)"
printf 'upload (PUT, fsync):  %.2f s (%.0f MiB/s)\n' "$up_s" "$(echo "$SIZE_MIB / $up_s" | bc -l)"
printf 'import (hash+store):  %.2f s (%.0f MiB/s) = %.0f%% of openssl\n' "$imp_s" "$(echo "$SIZE_MIB / $imp_s" | bc -l)" "$(echo "100 * $openssl_s / $imp_s" | bc -l)"
printf 'upload + store:       %.2f s (%.0f MiB/s) = %.0f%% of openssl\n' "$tot_s" "$(echo "$SIZE_MIB / $tot_s" | bc -l)" "$(echo "100 * $openssl_s / $tot_s" | bc -l)"
printf 'server peak RSS:      %.0f MiB\n' "$(echo "$rss_kib / 1024" | bc -l)"
rm -f "$W/big"

echo "## docker save import of ${SIZE_MIB} MiB"
# A legacy `docker save` layout: 8 layers, each a tar of one random file.
scripts/make-docker-save.py "$W/save.tar" "$SIZE_MIB"
sync
cat "$W/save.tar" > /dev/null
SAVE_MIB=$(( $(stat -c %s "$W/save.tar") >> 20 ))
t0=$(date +%s.%N); openssl dgst -sha256 "$W/save.tar" > /dev/null; t1=$(date +%s.%N)
openssl_s=$(echo "$t1 - $t0" | bc -l)
start_server save
c -XPOST "$API/repositories" -H content-type:application/json -d '{"id":"d","content_type":"docker"}' > /dev/null
UP=$(c -XPOST "$API/uploads" -H content-type:application/json -d "{\"size\":$(stat -c %s "$W/save.tar")}" | jq -r .id)
t0=$(date +%s.%N)
c -XPUT "$API/uploads/$UP?offset=0" -H content-type:application/octet-stream -T "$W/save.tar" > /dev/null
t1=$(date +%s.%N)
TASK=$(c -XPOST "$API/repositories/d/import" -H content-type:application/json -d "{\"upload_id\":\"$UP\"}" | jq -r .id)
wait_task "$TASK"
t2=$(date +%s.%N)
rss_kib=$(grep VmHWM /proc/$PID/status | awk '{print $2}')
stop_server
up_s=$(echo "$t1 - $t0" | bc -l); imp_s=$(echo "$t2 - $t1" | bc -l); tot_s=$(echo "$t2 - $t0" | bc -l)
# The same archive as the body of the import itself: layers are stored while
# it arrives (what `wharf docker repo uploads upload` does). A fresh server, so no
# blob is already stored.
start_server stream
c -XPOST "$API/repositories" -H content-type:application/json -d '{"id":"d","content_type":"docker"}' > /dev/null
t0=$(date +%s.%N)
state=$(c -XPOST "$API/repositories/d/import" -H content-type:application/x-tar -T "$W/save.tar" | jq -r .state)
t1=$(date +%s.%N)
[ "$state" = finished ] || { echo "streaming import ended $state" >&2; exit 1; }
stream_rss_kib=$(grep VmHWM /proc/$PID/status | awk '{print $2}')
stop_server
rm -f "$W/save.tar"
stream_s=$(echo "$t1 - $t0" | bc -l)
printf 'openssl dgst -sha256:  %.2f s (%.0f MiB/s)\n' "$openssl_s" "$(echo "$SAVE_MIB / $openssl_s" | bc -l)"
printf 'upload (PUT, fsync):   %.2f s (%.0f MiB/s)\n' "$up_s" "$(echo "$SAVE_MIB / $up_s" | bc -l)"
printf 'import (layers stored): %.2f s (%.0f MiB/s) = %.0f%% of openssl\n' "$imp_s" "$(echo "$SAVE_MIB / $imp_s" | bc -l)" "$(echo "100 * $openssl_s / $imp_s" | bc -l)"
printf 'upload + import:       %.2f s (%.0f MiB/s) = %.0f%% of openssl\n' "$tot_s" "$(echo "$SAVE_MIB / $tot_s" | bc -l)" "$(echo "100 * $openssl_s / $tot_s" | bc -l)"
printf 'server peak RSS:       %.0f MiB\n' "$(echo "$rss_kib / 1024" | bc -l)"
printf 'streaming import:      %.2f s (%.0f MiB/s) = %.0f%% of openssl, server peak RSS %.0f MiB\n' "$stream_s" "$(echo "$SAVE_MIB / $stream_s" | bc -l)" "$(echo "100 * $openssl_s / $stream_s" | bc -l)" "$(echo "$stream_rss_kib / 1024" | bc -l)"

echo "## the disk: durable write of ${SIZE_MIB} MiB (dd conv=fdatasync)"
durable_write "$SIZE_MIB"

cli_import

dispatch() {
    local label=$1; shift
    start_server "$label" "$@"
    for r in a b; do c -XPOST "$API/repositories" -H content-type:application/json -d "{\"id\":\"$r\",\"content_type\":\"file\"}" > /dev/null; done
    local t0 t1
    t0=$(date +%s.%N)
    for i in $(seq 1 1000); do
        c -XPOST "$API/repositories/a/copy" -H content-type:application/json -d '{"from":"b"}' > /dev/null
    done
    while [ "$(c "$API/tasks?state=finished&limit=1000" | jq length)" -lt 1000 ]; do sleep 0.1; done
    t1=$(date +%s.%N)
    c "$API/tasks?limit=1000" | python3 -c '
import json, sys, datetime
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
ts = json.load(sys.stdin)
d = sorted((t(x["started_at"]) - t(x["created_at"])).total_seconds() * 1000 for x in ts)
print(f"'"$label"': {len(ts)} tasks; submit -> running p50 {d[len(d)//2]:.2f} ms, p99 {d[int(len(d)*0.99)]:.2f} ms")'
    printf '%s: 1000 tasks submitted and finished in %.2f s\n' "$label" "$(echo "$t1 - $t0" | bc -l)"
    stop_server
}
echo "## task dispatch"
dispatch in-process
if [ -n "${WHARF_BENCH_AMQP_URL:-}" ]; then
    dispatch amqp --broker "$WHARF_BENCH_AMQP_URL" --broker-queue "wharf.bench.$$"
fi
