#!/usr/bin/env bash
# What TLS costs Wharf's registry side: the same server and data directory,
# measured over plain HTTP and then over TLS (--tls-self-signed, rustls),
# on loopback:
#
#   1. manifest GET by tag under wrk with keep-alive (64 connections, docker's
#      Accept header): requests/s, p50, p99;
#   2. blob GET throughput of a 128 MiB layer (wrk, 4 connections).
#
# Target (issue #10): TLS costs at most 20% of manifest GETs/s with keep-alive.
#
# Usage: scripts/bench-tls.sh [--duration SECONDS] [--rounds N] [--keep]
#   --rounds  plain/TLS pairs of measurements, alternated (default 2)
# Uses $WHARF_BIN and $WHARF_PLUGIN_DIR when set, else target/release/wharf and
# target/plugins. Needs wrk, curl, jq, skopeo, umoci. Prints a Markdown table
# ready for docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

DURATION=10
ROUNDS=2
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench-tls.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for cmd in wrk curl jq skopeo umoci; do
    command -v "$cmd" >/dev/null || { echo "bench-tls.sh: $cmd not found" >&2; exit 1; }
done
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
export WHARF_ADMIN_PASSWORD=bench-admin-password

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-tls.XXXXXX")
export XDG_CONFIG_HOME=$W/config   # the admin client's login, not the user's
PID=""
stop() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
cleanup() {
    stop
    if [ "$KEEP" = 1 ]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
start() { # extra serve flags...
    WHARF_LOG=warn "$WHARF" serve --listen "$ADDR" --data-dir "$W/data" --plugin-dir "$PLUGIN_DIR" "$@" \
        >> "$W/wharf.log" 2>&1 &
    PID=$!
}
wait_up() { # url [curl flags]
    local url=$1; shift
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "$@" "$url" && return 0
        sleep 0.1
    done
    echo "bench-tls.sh: $url did not come up; log:" >&2
    tail -n 20 "$W/wharf.log" >&2
    exit 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "==> bench images in $W/images (load average: $LOAD_BEFORE)"
scripts/make-test-images.sh --bench "$W/images" > "$W/images.log"

echo "==> plain HTTP server on $ADDR; publishing bench/large"
start
wait_up "http://$ADDR/healthz"
"$WHARF" --server "http://$ADDR" login -u admin -p "$WHARF_ADMIN_PASSWORD" > /dev/null
"$WHARF" --server "http://$ADDR" publish-docker --id large --repo bench/large --publish \
    -f "$W/images/bench-large.tar" > "$W/publish.log" 2>&1

ACCEPT='application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'
MANIFEST_PATH=/v2/bench/large/manifests/latest
MANIFEST=$(curl -sf -H "Accept: $ACCEPT" "http://$ADDR$MANIFEST_PATH")
LAYER=$(jq -r '.layers | max_by(.size) | .digest' <<<"$MANIFEST")
LAYER_SIZE=$(jq -r '.layers | max_by(.size) | .size' <<<"$MANIFEST")
BLOB_PATH=/v2/bench/large/blobs/$LAYER

to_ms() {
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } \
           else if (v ~ /m$/) { sub(/m$/,"",v); v*=60000 } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'
}
to_mbs() {
    awk '{ v=$1; if (v ~ /GB$/) { sub(/GB$/,"",v); v*=1024 } else if (v ~ /MB$/) { sub(/MB$/,"",v) } \
           else if (v ~ /KB$/) { sub(/KB$/,"",v); v/=1024 } else { sub(/B$/,"",v); v/=1048576 }; printf "%.1f", v }'
}
run_wrk() { # name connections url [header]
    local name=$1 conns=$2 url=$3 out=$W/wrk-$1.txt
    wrk -t2 -c"$conns" -d"${DURATION}s" --latency ${4:+-H "$4"} "$url" > "$out"
    if grep -q "Non-2xx" "$out"; then echo "$name: non-2xx answers:" >&2; cat "$out" >&2; exit 1; fi
    RPS=$(awk '/^Requests\/sec/ {print $2}' "$out")
    P50=$(awk '$1 == "50%" {print $2}' "$out" | to_ms)
    P99=$(awk '$1 == "99%" {print $2}' "$out" | to_ms)
    MBS=$(awk '/^Transfer\/sec/ {print $2}' "$out" | to_mbs)
}
measure() { # scheme
    local base=$1://$ADDR
    # Same bytes either way.
    got=$(curl -sfk "$base$BLOB_PATH" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$LAYER" ] || { echo "$base serves wrong bytes for $LAYER" >&2; exit 1; }
    wrk -t2 -c64 -d2s -H "Accept: $ACCEPT" "$base$MANIFEST_PATH" > /dev/null   # warm up
    echo "==> $1: manifest GET, wrk -t2 -c64 -d${DURATION}s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    run_wrk "manifest-$1" 64 "$base$MANIFEST_PATH" "Accept: $ACCEPT"
    M_RPS=$RPS M_P50=$P50 M_P99=$P99
    echo "==> $1: blob GET of a $((LAYER_SIZE / 1048576)) MiB layer, wrk -t2 -c4 -d${DURATION}s"
    run_wrk "blob-$1" 4 "$base$BLOB_PATH"
    B_MBS=$MBS
}

# Other work on the machine drifts: alternate plain and TLS rounds and
# report the mean of each (and every round, in the work directory).
mean() { awk '{ s += $1; n++ } END { printf "%.1f", s / n }'; }
: > "$W/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
    if [ -z "$PID" ]; then
        start
        wait_up "http://$ADDR/healthz"
    fi
    measure http
    echo "http $M_RPS $M_P50 $M_P99 $B_MBS" >> "$W/rounds.txt"
    stop
    echo "==> round $round: the same data directory over TLS (--tls-self-signed)"
    start --tls-self-signed
    wait_up "https://$ADDR/healthz" --cacert "$W/data/tls/ca.crt"
    measure https
    echo "https $M_RPS $M_P50 $M_P99 $B_MBS" >> "$W/rounds.txt"
    stop
done
col() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$W/rounds.txt" | mean; }
H_RPS=$(col http 2) H_P50=$(col http 3) H_P99=$(col http 4) H_MBS=$(col http 5)
T_RPS=$(col https 2) T_P50=$(col https 3) T_P99=$(col https 4) T_MBS=$(col https 5)
ROUND_LIST=$(awk '$1 == "http" { h = h (h ? ", " : "") $2 } $1 == "https" { t = t (t ? ", " : "") $2 } END { print "plain " h "; TLS " t }' "$W/rounds.txt")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
# The condition is awk code (passing it with -v would make it a string,
# always true).
verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "NOT met"; fi; }
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
cat <<EOT

### TLS run of $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores ($CPU), $(uname -r)

One Wharf process at a time on the same data directory, wrk (and its
OpenSSL) on the same 2 cores; TLS is rustls (ring) with the self-signed ECDSA
P-256 certificate, TLS 1.3 AES-128-GCM, keep-alive (handshakes are not in the
figures). Means of $ROUNDS alternated rounds (manifest req/s per round:
$ROUND_LIST). Load average at the start: $LOAD_BEFORE.

| measurement | plain HTTP | TLS | TLS / plain | target | |
| --- | ---: | ---: | ---: | --- | --- |
| manifest GET by tag, req/s (wrk, 64 conns, ${DURATION} s) | $H_RPS | $T_RPS | $(ratio "$T_RPS" "$H_RPS") | ≥ 0.80 | $(verdict "$T_RPS >= 0.8 * $H_RPS") |
| manifest GET p50 / p99 (ms) | $H_P50 / $H_P99 | $T_P50 / $T_P99 | | | |
| blob GET, $((LAYER_SIZE / 1048576)) MiB layer, MiB/s (wrk, 4 conns) | $H_MBS | $T_MBS | $(ratio "$T_MBS" "$H_MBS") | | |
EOT
