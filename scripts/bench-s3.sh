#!/usr/bin/env bash
# Blobs in object storage (--blob-store s3://…), measured in one run against
# s3s-fs on loopback (docs/benchmarks.md, "Object storage"):
#   1. a push of a PUSH_MIB layer (one monolithic registry PUT) against
#      `wharf bench object-put` of the same bytes (the crate's plain
#      multipart upload, as the blob store does it);
#   2. a streaming import of an IMPORT_MIB `docker save` (8 layers) against
#      object-put of the same archive;
#   3. a pull of the layer through the presigned redirect (curl -L) against
#      a GET of the presigned URL itself;
#   with the server's peak RSS and the disk's durable write speed beside.
# Needs s3s-fs (scripts/test.sh builds it into target/tools).
# Usage: scripts/bench-s3.sh [PUSH_MIB] [IMPORT_MIB]   (default 64 512)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PUSH_MIB=${1:-64}
IMPORT_MIB=${2:-512}
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
S3S=${WHARF_TEST_S3S_BIN:-$ROOT/target/tools/bin/s3s-fs}
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
export WHARF_ADMIN_PASSWORD=bench-admin-password
W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-s3.XXXXXX")
PID="" S3PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null
    wait 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secs() { echo "$2 - $1" | bc -l; }

S3PORT=$(port)
mkdir -p "$W/s3/bench"
"$S3S" --host 127.0.0.1 --port "$S3PORT" --access-key bench --secret-key bench-secret "$W/s3" > "$W/s3.log" 2>&1 &
S3PID=$!
S3_FLAGS=(--s3-endpoint "http://127.0.0.1:$S3PORT" --s3-access-key-id bench --s3-secret-access-key bench-secret)
until curl -s "http://127.0.0.1:$S3PORT" > /dev/null; do sleep 0.05; done

PORT=$(port)
BASE=http://127.0.0.1:$PORT
WHARF_LOG=warn "$WHARF" serve --listen "127.0.0.1:$PORT" --data-dir "$W/data" --plugin-dir "$PLUGIN_DIR" \
    --blob-store s3://bench/wharf --blob-redirect 5m "${S3_FLAGS[@]}" 2> "$W/server.log" &
PID=$!
for _ in $(seq 1 200); do curl -sf "$BASE/readyz" > /dev/null && break; sleep 0.05; done
TOKEN=$(curl -sf -XPOST -u "admin:$WHARF_ADMIN_PASSWORD" "$BASE/api/v1/login" | jq -r .token)
c() { curl -sf -H "authorization: Bearer $TOKEN" "$@"; }
rss() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }

echo "## push of a ${PUSH_MIB} MiB layer"
head -c $((PUSH_MIB << 20)) /dev/urandom > "$W/layer"
DIGEST=sha256:$(sha256sum "$W/layer" | cut -d' ' -f1)
sync; cat "$W/layer" > /dev/null
plain=$("$WHARF" bench object-put --file "$W/layer" --to s3://bench/plain "${S3_FLAGS[@]}" | tee /dev/stderr)
plain_s=$(echo "$plain" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
LOC=$(curl -sf -D - -o /dev/null -XPOST -u "admin:$WHARF_ADMIN_PASSWORD" "$BASE/v2/bench/push/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
case $LOC in http*) ;; *) LOC=$BASE$LOC ;; esac
case $LOC in *\?*) SEP='&' ;; *) SEP='?' ;; esac
t0=$(date +%s.%N)
curl -sf -XPUT -u "admin:$WHARF_ADMIN_PASSWORD" -H content-type:application/octet-stream -T "$W/layer" "$LOC${SEP}digest=$DIGEST" > /dev/null
t1=$(date +%s.%N)
push_s=$(secs "$t0" "$t1")
printf 'push through wharf: %.2f s (%.0f MiB/s) = %.2fx the plain upload; server peak RSS %s MiB\n' \
    "$push_s" "$(echo "$PUSH_MIB / $push_s" | bc -l)" "$(echo "$plain_s / $push_s" | bc -l)" "$(rss)"

echo "## pull of it through the redirect"
curl -sf -o /dev/null -D "$W/head" "$BASE/v2/bench/push/blobs/$DIGEST" || true
URL=$(tr -d '\r' < "$W/head" | awk 'tolower($1)=="location:" {print $2}')
[ -n "$URL" ] || { echo "no redirect" >&2; cat "$W/head" >&2; exit 1; }
best() { local b=999 t0 t1 s; for _ in 1 2 3 4 5; do t0=$(date +%s.%N); curl -sf -L -o /dev/null "$1"; t1=$(date +%s.%N); s=$(secs "$t0" "$t1"); b=$(echo "if ($s < $b) $s else $b" | bc -l); done; echo "$b"; }
curl -sf -o /dev/null "$URL"   # warm: s3s-fs reads its file from the page cache for both
direct_s=$(best "$URL")
via_s=$(best "$BASE/v2/bench/push/blobs/$DIGEST")
printf 'presigned URL directly: %.3f s; through wharf (307): %.3f s = %.2fx the direct rate\n' \
    "$direct_s" "$via_s" "$(echo "$direct_s / $via_s" | bc -l)"

echo "## streaming import of a ${IMPORT_MIB} MiB docker save"
scripts/make-docker-save.py "$W/save.tar" "$IMPORT_MIB"
SAVE_MIB=$(( $(stat -c %s "$W/save.tar") >> 20 ))
sync; cat "$W/save.tar" > /dev/null
plain=$("$WHARF" bench object-put --file "$W/save.tar" --to s3://bench/plain --runs 1 "${S3_FLAGS[@]}" | tee /dev/stderr)
plain_s=$(echo "$plain" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
c -XPOST "$BASE/api/v1/repositories" -H content-type:application/json -d '{"id":"d","content_type":"docker"}' > /dev/null
t0=$(date +%s.%N)
state=$(c -XPOST "$BASE/api/v1/repositories/d/import" -H content-type:application/x-tar -T "$W/save.tar" | jq -r .state)
t1=$(date +%s.%N)
[ "$state" = finished ] || { echo "streaming import ended $state" >&2; exit 1; }
imp_s=$(secs "$t0" "$t1")
printf 'streaming import: %.2f s (%.0f MiB/s) = %.2fx the plain upload; server peak RSS %s MiB\n' \
    "$imp_s" "$(echo "$SAVE_MIB / $imp_s" | bc -l)" "$(echo "$plain_s / $imp_s" | bc -l)" "$(rss)"

echo "## the disk: durable write of ${IMPORT_MIB} MiB (dd conv=fdatasync)"
dd if=/dev/zero of="$W/dd" bs=1M count="$IMPORT_MIB" conv=fdatasync 2>&1 | tail -1
