#!/usr/bin/env bash
# Repository versions (issue #20), measured in one run on this machine:
#   1. the store: a one-unit change (one new version), a diff of two
#      versions and a page of an older version in repositories of 1,000,
#      10,000 and 100,000 units, on the embedded SQLite store and, when
#      WHARF_BENCH_MONGO_URL is set, on MongoDB (wharf bench versions);
#   2. through the API: copying one tag out of a repository of 10,000 tags
#      (a `copy` task: the plugin selects it, the target adopts it), against
#      copying a repository of one tag, and a one-tag `tag` task in each.
# Usage: scripts/bench-versions.sh   (needs target/release/wharf, the plugins,
# and the test images: scripts/make-test-images.sh target/test-images)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
IMAGES=${WHARF_TEST_IMAGES:-$ROOT/target/test-images}
export WHARF_ADMIN_PASSWORD=bench-admin-password
W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-versions.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

echo "## store: sqlite"
"$WHARF" bench versions
if [ -n "${WHARF_BENCH_MONGO_URL:-}" ]; then
    echo "## store: mongodb"
    "$WHARF" bench versions --db "$WHARF_BENCH_MONGO_URL"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API=http://127.0.0.1:$PORT/api/v1
WHARF_LOG=warn "$WHARF" serve --listen "127.0.0.1:$PORT" --data-dir "$W/data" --plugin-dir "$PLUGIN_DIR" 2> "$W/server.log" &
PID=$!
for _ in $(seq 1 200); do curl -sf "$API/status" > /dev/null && break; sleep 0.05; done
TOKEN=$(curl -sf -XPOST -u "admin:$WHARF_ADMIN_PASSWORD" "$API/login" | jq -r .token)
c() { curl -sf -H "authorization: Bearer $TOKEN" "$@"; }
# Run a repository task to its end; print how long it ran (started → finished).
task_ms() {
    local id state
    id=$(c -XPOST -H 'content-type: application/json' -d "$3" "$API/repositories/$1/$2" | jq -r .id)
    while :; do
        state=$(c "$API/tasks/$id" | jq -r .state)
        case $state in finished) break ;; error|canceled) c "$API/tasks/$id" >&2; exit 1 ;; esac
        sleep 0.01
    done
    c "$API/tasks/$id" | python3 -c '
import json, sys
from datetime import datetime
t = json.load(sys.stdin)
p = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
print(round((p(t["finished_at"]) - p(t["started_at"])).total_seconds() * 1000, 1))'
}
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The busybox archive with 10,000 tags on its one image.
python3 - "$IMAGES/busybox.tar" "$W/many-tags.tar" <<'PY'
import io, json, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as i, tarfile.open(dst, "w") as o:
    for m in i.getmembers():
        data = i.extractfile(m).read() if m.isfile() else None
        if m.name == "manifest.json":
            doc = json.loads(data)
            doc[0]["RepoTags"] = [f"bench/many:t{n:05}" for n in range(10000)]
            data = json.dumps(doc).encode()
            m.size = len(data)
        o.addfile(m, io.BytesIO(data) if data is not None else None)
PY
for r in many one dst; do
    c -XPOST -H 'content-type: application/json' -d "{\"id\":\"$r\",\"content_type\":\"docker\"}" "$API/repositories" > /dev/null
done
c -XPOST -H 'content-type: application/x-tar' --data-binary "@$W/many-tags.tar" "$API/repositories/many/import" > /dev/null
c -XPOST -H 'content-type: application/x-tar' --data-binary "@$IMAGES/busybox.tar" "$API/repositories/one/import" > /dev/null
echo "## copy one tag (task run time, p50 of 10)"
many=$(for n in $(seq 1 10); do task_ms dst copy "{\"from\":\"many\",\"references\":[\"t0$((1000 + n))\"]}"; done | p50)
one=$(for n in $(seq 1 10); do
    c -XPOST -H 'content-type: application/json' -d "{\"id\":\"dst$n\",\"content_type\":\"docker\"}" "$API/repositories" > /dev/null
    task_ms "dst$n" copy '{"from":"one","references":["latest"]}'
done | p50)
echo "out of 10,000 tags: ${many} ms; out of 1 tag: ${one} ms"
echo "## tag task (p50 of 10)"
many=$(for n in $(seq 1 10); do task_ms many tag "{\"tag\":\"new$n\",\"target\":\"t00001\"}"; done | p50)
one=$(for n in $(seq 1 10); do task_ms one tag "{\"tag\":\"new$n\",\"target\":\"latest\"}"; done | p50)
echo "in a repository of 10,000 tags: ${many} ms; of 1 tag: ${one} ms"
