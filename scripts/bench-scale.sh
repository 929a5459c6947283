#!/usr/bin/env bash
# Scale (issue #24): what one operation costs as an installation grows,
# measured against the real server (target/release/wharf, on the embedded
# SQLite store or, with --store mongodb, on MongoDB) over HTTP on loopback.
#
#   repositories  N = 1k, 10k, 100k (--quick: 100, 1k, 5k) docker
#                 repositories, created 8 requests at a time, each with the
#                 note team=t<i mod 100> (a note filter matches 1 %). At each
#                 N: repository create, GET, a list page (limit=100 after a
#                 random id), a note-filter page (note=team=t7, limit=10), a
#                 manifest push to a new name (two blob uploads and the
#                 manifest PUT, which creates and auto-publishes the
#                 repository; the PUT is timed), a blob HEAD answered 404
#                 after every repository received a blob (a note each,
#                 written into the data directory), a repository GET by a
#                 user granted read on each of the N repositories (as
#                 pushes to new names grant), a catalog page (/v2/_catalog,
#                 n=100 after a random name) by a user granted read on 10
#                 repositories and by that user granted read on all, with
#                 every repository protected and published (written into
#                 the SQLite store with the server stopped; skipped on
#                 MongoDB), each the median and p90 of
#                 --samples requests timed by curl (-w %{time_total}, one
#                 kept-alive connection per batch); manifest GET by tag under
#                 wrk on a published repository, next to the same GET on a
#                 10-repository server (alternated rounds); server start-up
#                 (process start to /api/v1/status answering, median of 3
#                 restarts) and its RSS then; from the same start, a manifest
#                 GET by tag answered (a published name is served while the
#                 publications load) and a catalog page answered (it waits
#                 until every publication is loaded).
#   tags          one repository with N = 1k, 10k tags (--quick: 100, 1k):
#                 one manifest pushed under N tags (PUT /v2/<name>/manifests/
#                 <tag>, auto_publish off); at each N its publish (task
#                 started -> finished, median of 3), one more manifest push
#                 into it (auto_publish off, then on: the push publishes
#                 before it answers), a push naming a layer the repository
#                 holds but neither published nor received lately (its
#                 received notes removed), and a tags/list page
#                 (n=100&last=<a middle tag>).
#   blobs         N = 100k, 1M (--quick: 10k, 100k) orphan blob files written
#                 into <data-dir>/blobs/sha256/ with the server stopped: blob
#                 fsck (task time; skipped when the server has no
#                 /api/v1/blobs/fsck), then orphan cleanup with
#                 protection_minutes=0 (task time, peak server RSS sampled
#                 every 50 ms during it); per blob, next to the file
#                 system's own floor (python stat'ing and unlinking up to
#                 20,000 such files).
#
# Raw samples and figures go to docs/charts/scale.json, one SVG chart per
# operation to docs/charts/scale-<operation>.svg, and the section
# "## Scale (issue #24)" of docs/benchmarks.md is written or replaced
# (scripts/bench_scale_chart.py does the statistics, charts and Markdown).
#
# Usage: scripts/bench-scale.sh [--quick] [--sizes 1000,10000,100000]
#          [--tag-sizes 1000,10000] [--blob-sizes 100000,1000000]
#          [--samples N] [--wrk-duration S] [--store sqlite|mongodb]
#          [--out DIR] [--docs FILE|-] [--keep]
#   --quick         small sizes, 50 samples, 3 s wrk rounds (about 5 minutes);
#                   the full sizes take 20-30 minutes on 2 cores
#   --sizes         repository counts (comma or space separated), likewise
#                   --tag-sizes and --blob-sizes; an empty list skips the part
#   --store         the metadata store: sqlite (default) or mongodb, a
#                   secantusdb server started by scripts/mongo.sh (a database
#                   per server), or the one at $WHARF_BENCH_MONGO_URL
#   --out DIR       where scale.json and the charts go (default docs/charts)
#   --docs FILE     the Markdown file whose section is replaced (default
#                   docs/benchmarks.md); --docs - prints the section instead
#   --keep          keep the work directory (data directories, logs, samples)
# Uses $WHARF_BIN and $WHARF_PLUGIN_DIR when set, else target/release/wharf
# and target/plugins. Needs curl, jq, wrk and python3 (standard library).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

ARGS=""   # the command line, as the report quotes it
for a in "$@"; do
    case $a in ""|*" "*) ARGS+=" '$a'" ;; *) ARGS+=" $a" ;; esac
done
QUICK=0
KEEP=0
SIZES="" TAG_SIZES="" BLOB_SIZES="" SAMPLES="" WRK_SECS=""
SIZES_SET=0 TAG_SIZES_SET=0 BLOB_SIZES_SET=0
OUT=docs/charts
DOCS=docs/benchmarks.md
STORE=sqlite
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --sizes) SIZES=${2//,/ }; SIZES_SET=1; shift 2 ;;
        --tag-sizes) TAG_SIZES=${2//,/ }; TAG_SIZES_SET=1; shift 2 ;;
        --blob-sizes) BLOB_SIZES=${2//,/ }; BLOB_SIZES_SET=1; shift 2 ;;
        --samples) SAMPLES=$2; shift 2 ;;
        --wrk-duration) WRK_SECS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --docs) DOCS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --store) STORE=$2; shift 2 ;;
        -h|--help) sed -n '2,55p' "$0"; exit 0 ;;
        *) echo "bench-scale.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    [ "$SIZES_SET" = 1 ] || SIZES="100 1000 5000"
    [ "$TAG_SIZES_SET" = 1 ] || TAG_SIZES="100 1000"
    [ "$BLOB_SIZES_SET" = 1 ] || BLOB_SIZES="10000 100000"
    SAMPLES=${SAMPLES:-50}
    WRK_SECS=${WRK_SECS:-3}
else
    [ "$SIZES_SET" = 1 ] || SIZES="1000 10000 100000"
    [ "$TAG_SIZES_SET" = 1 ] || TAG_SIZES="1000 10000"
    [ "$BLOB_SIZES_SET" = 1 ] || BLOB_SIZES="100000 1000000"
    SAMPLES=${SAMPLES:-100}
    WRK_SECS=${WRK_SECS:-5}
fi
case $STORE in sqlite|mongodb) ;; *) echo "bench-scale.sh: --store is sqlite or mongodb" >&2; exit 2 ;; esac
# Ascending, whatever order they were given in.
ascending() { tr ' ' '\n' | awk 'NF' | sort -n | tr '\n' ' '; }
SIZES=$(ascending <<<"$SIZES") TAG_SIZES=$(ascending <<<"$TAG_SIZES") BLOB_SIZES=$(ascending <<<"$BLOB_SIZES")

for cmd in curl jq wrk python3; do
    command -v "$cmd" >/dev/null || { echo "bench-scale.sh: $cmd not found (apt-get install $cmd)" >&2; exit 1; }
done
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
if [ ! -x "$WHARF" ] || [ ! -f "$PLUGIN_DIR/docker.wasm" ]; then
    echo "bench-scale.sh: needs $WHARF and $PLUGIN_DIR/docker.wasm (scripts/build-plugins.sh; cargo build --release -p wharf)" >&2
    exit 1
fi
# The servers started here create their first administrator with this password.
export WHARF_ADMIN_PASSWORD=bench-admin-password

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-scale.XXXXXX")
mkdir -p "$W/samples"
RESULTS=$W/results.jsonl
: > "$RESULTS"
RSS_SAMPLER=""
cleanup() {
    [ -n "$RSS_SAMPLER" ] && kill "$RSS_SAMPLER" 2>/dev/null
    for f in "$W"/*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    wait 2>/dev/null
    [ -d "$W/mongo" ] && scripts/mongo.sh stop "$W/mongo" >/dev/null 2>&1
    if [ "$KEEP" = 1 ]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
log() { echo "==> [$(date -u +%H:%M:%S)] $*" >&2; }

# The metadata store: each server's own SQLite file, or its own database on
# one MongoDB server.
MONGO_URL=""
if [ "$STORE" = mongodb ]; then
    MONGO_URL=${WHARF_BENCH_MONGO_URL:-}
    if [ -z "$MONGO_URL" ]; then
        mkdir -p "$W/mongo"
        MONGO_URL=$(scripts/mongo.sh start "$W/mongo" "$(free_port)")
    fi
    MONGO_URL=${MONGO_URL%/}
fi
store_args() { # NAME
    [ -n "$MONGO_URL" ] && echo "--db $MONGO_URL/wharf_bench_$1_$$"
    return 0
}

# ---------------------------------------------------------------- servers --
# start_server NAME [PATH...]: starts the server NAME (data directory $W/NAME,
# port in $W/NAME.port) and waits until /api/v1/status answers; sets
# STARTUP_MS (from the process's start) and RSS_KB (its resident set then),
# and logs in (TOKEN). Then waits for each PATH (anonymous GETs) to answer
# 2xx in turn, and sets READY_MS to the milliseconds from the process's start
# to each.
start_server() {
    local name=$1 port t0 pid path
    shift
    port=$(cat "$W/$name.port")
    t0=$(now_ns)
    # shellcheck disable=SC2046 # store_args is empty or two words
    WHARF_LOG=warn RUST_LOG=warn "$WHARF" serve --listen "127.0.0.1:$port" --data-dir "$W/$name" \
        --plugin-dir "$PLUGIN_DIR" $(store_args "$name") >> "$W/$name.log" 2>&1 &
    pid=$!
    echo "$pid" > "$W/$name.pid"
    until curl -sf -o /dev/null "http://127.0.0.1:$port/api/v1/status"; do
        kill -0 "$pid" 2>/dev/null || { echo "server $name died:" >&2; tail -20 "$W/$name.log" >&2; exit 1; }
        [ $(( ($(now_ns) - t0) / 1000000000 )) -lt 300 ] || { echo "server $name did not come up" >&2; exit 1; }
        sleep 0.005
    done
    STARTUP_MS=$(( ($(now_ns) - t0) / 1000000 ))
    READY_MS=()
    for path in "$@"; do
        until curl -sf -o /dev/null -H "Accept: $ACCEPT" "http://127.0.0.1:$port$path"; do
            [ $(( ($(now_ns) - t0) / 1000000000 )) -lt 300 ] || { echo "server $name never answered $path" >&2; exit 1; }
            sleep 0.002
        done
        READY_MS+=($(( ($(now_ns) - t0) / 1000000 )))
    done
    RSS_KB=$(ps -o rss= -p "$pid" | tr -d ' ')
    TOKEN=$(curl -sf -u "admin:$WHARF_ADMIN_PASSWORD" -XPOST "http://127.0.0.1:$port/api/v1/login" | jq -r .token)
    echo "$TOKEN" > "$W/$name.token"
}
stop_server() { # NAME
    local pid
    pid=$(cat "$W/$1.pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$W/$1.pid"
}
new_server() { # NAME
    free_port > "$W/$1.port"
    start_server "$1"
}
base() { echo "http://127.0.0.1:$(cat "$W/$1.port")"; }
api() { # NAME curl-args...
    local name=$1; shift
    curl -sf -H "Authorization: Bearer $(cat "$W/$name.token")" "$@"
}

# ---------------------------------------------------------------- records --
# record SECTION OP SIZE UNIT FILE: the numbers in FILE (one a line) as the
# samples of OP at SIZE.
record() {
    jq -cn --arg section "$1" --arg op "$2" --argjson size "$3" --arg unit "$4" \
        --slurpfile v "$5" '{section: $section, op: $op, size: $size, unit: $unit, samples: $v}' >> "$RESULTS"
}
per_second() { # COUNT START_NS: COUNT over the time since START_NS
    awk -v c="$1" -v ns=$(($(now_ns) - $2)) 'BEGIN { printf "%.0f", c / (ns / 1e9) }'
}

value() { # SECTION OP SIZE UNIT VALUE...
    local section=$1 op=$2 size=$3 unit=$4 f=$W/samples/value.txt
    shift 4
    printf '%s\n' "$@" > "$f"
    record "$section" "$op" "$size" "$unit" "$f"
}

# A batch of requests made by one curl process over one kept-alive
# connection, described in a curl config file (one block per request,
# `next` between them; see req). batch NAME CONFIG LABEL [STATUS]: checks
# every answer is 2xx (or STATUS) and writes the milliseconds of the
# requests written out with LABEL to $W/samples/NAME.txt.
req() { # CONFIG LABEL METHOD URL TOKEN [DATA-FILE CONTENT-TYPE]
    {
        [ -s "$1" ] && echo next
        echo "url = \"$4\""
        # A HEAD as curl -I makes it (with -X HEAD curl waits for a body).
        if [ "$3" = HEAD ]; then echo "head"; else echo "request = \"$3\""; fi
        echo "header = \"Authorization: Bearer $5\""
        [ -n "${6:-}" ] && echo "data-binary = \"@$6\"" && echo "header = \"Content-Type: $7\""
        echo "output = \"/dev/null\""
        echo "write-out = \"$2 %{http_code} %{time_total}\\n\""
    } >> "$1"
}
batch() { # NAME CONFIG LABEL [STATUS: every answer must be this, else 2xx]
    local out=$W/samples/$1.raw want=${4:-}
    curl -s -K "$2" > "$out"
    if awk -v w="$want" '(w == "" && ($2 < 200 || $2 >= 300)) || (w != "" && $2 != w) { bad = 1 } END { exit !bad }' "$out"; then
        echo "$1: unexpected answers (want ${want:-2xx}):" >&2
        awk -v w="$want" '(w == "" && ($2 < 200 || $2 >= 300)) || (w != "" && $2 != w)' "$out" | sort | uniq -c | head >&2
        exit 1
    fi
    awk -v l="$3" '$1 == l { printf "%.3f\n", $3 * 1000 }' "$out" > "$W/samples/$1.txt"
    rm -f "$2"
}

# A task to its end; prints its run time in milliseconds (started -> finished).
wait_task_ms() { # NAME TASK-JSON
    local id t state
    id=$(jq -r .id <<<"$2")
    while :; do
        t=$(api "$1" "$(base "$1")/api/v1/tasks/$id")
        state=$(jq -r .state <<<"$t")
        case $state in
            finished) break ;;
            error|canceled) echo "task $id: $t" >&2; exit 1 ;;
        esac
        sleep 0.02
    done
    echo "$t" > "$W/last-task.json"
    jq -r '(.finished_at, .started_at)' <<<"$t" | python3 -c '
import sys
from datetime import datetime
f, s = (datetime.fromisoformat(l.strip().replace("Z", "+00:00")) for l in sys.stdin)
print(round((f - s).total_seconds() * 1000, 1))'
}

# ---------------------------------------------------------------- content --
# One small image: a config and a layer blob, a schema2 manifest naming them.
CONFIG_JSON='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
printf '%s' "$CONFIG_JSON" > "$W/config.json"
head -c 1024 /dev/urandom > "$W/layer.bin"
digest_of() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
CONFIG_DIGEST=$(digest_of "$W/config.json")
LAYER_DIGEST=$(digest_of "$W/layer.bin")
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
jq -cn --arg cd "$CONFIG_DIGEST" --argjson cs "$(stat -c %s "$W/config.json")" \
    --arg ld "$LAYER_DIGEST" --argjson ls "$(stat -c %s "$W/layer.bin")" --arg mt "$DOCKER_MANIFEST" '{
    schemaVersion: 2, mediaType: $mt,
    config: {mediaType: "application/vnd.docker.container.image.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: $ld, size: $ls}]}' \
    | tr -d '\n' > "$W/manifest.json"
ACCEPT="$DOCKER_MANIFEST, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"

# push_blobs NAME REGISTRY-NAME: uploads the two blobs (monolithic POSTs).
push_blobs() {
    local b
    b=$(base "$1")
    api "$1" -o /dev/null -XPOST -H 'Content-Type: application/octet-stream' --data-binary "@$W/config.json" \
        "$b/v2/$2/blobs/uploads/?digest=$CONFIG_DIGEST"
    api "$1" -o /dev/null -XPOST -H 'Content-Type: application/octet-stream' --data-binary "@$W/layer.bin" \
        "$b/v2/$2/blobs/uploads/?digest=$LAYER_DIGEST"
}
push_image() { # NAME REGISTRY-NAME TAG
    push_blobs "$1" "$2"
    api "$1" -o /dev/null -XPUT -H "Content-Type: $DOCKER_MANIFEST" --data-binary "@$W/manifest.json" \
        "$(base "$1")/v2/$2/manifests/$3"
}

# Received-blob notes of repositories r<FROM>..r<TO-1>, one blob each
# (`received/<repo>/<hex>` and its index entry `receivers/<hex>/<repo>`).
cat > "$W/notes.py" <<'PY'
import hashlib, os, sys
root, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(start, end):
    repo = f"r{i:06d}"
    hexd = hashlib.sha256(repo.encode()).hexdigest()
    for d, name in ((os.path.join(root, "received", repo), hexd), (os.path.join(root, "receivers", hexd), repo)):
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, name), "wb").close()
PY

# Repositories r<FROM>..r<TO-1> protected and published under bulk/r<i>,
# written into the SQLite store with the server stopped (as the server
# writes them; the index digest names no stored blob: only the catalog,
# which lists names, reads these publications).
cat > "$W/publish.py" <<'PY'
import datetime, hashlib, json, sqlite3, sys
db, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
c = sqlite3.connect(db)
with c:
    for i in range(start, end):
        repo = f"r{i:06d}"
        c.execute("UPDATE repositories SET doc = json_set(doc, '$.distributor_config.protected', json('true')) "
                  "WHERE id = ?", (repo,))
        (config,) = c.execute("SELECT json_extract(doc, '$.distributor_config') FROM repositories WHERE id = ?",
                              (repo,)).fetchone()
        p = {"plugin": "docker", "name": f"bulk/{repo}", "repo_id": repo,
             "index": "sha256:" + hashlib.sha256(repo.encode()).hexdigest(),
             "config": json.loads(config), "published_at": now}
        c.execute("INSERT INTO publications (plugin, name, repo_id, doc) VALUES ('docker', ?, ?, ?)",
                  (p["name"], repo, json.dumps(p)))
c.close()
PY

# Many requests at once, each connection kept alive: repositories
# (`repos FROM TO`, ids r000000.., note team=t<i mod 100>) or tags of one
# manifest (`tags REGISTRY-NAME FROM TO MANIFEST`, tags t00000..).
cat > "$W/bulk.py" <<'PY'
import http.client, json, sys, threading
kind, base, token = sys.argv[1:4]
host, port = base.removeprefix("http://").rsplit(":", 1)
if kind == "repos":
    lo, hi = int(sys.argv[4]), int(sys.argv[5])
    def request(i):
        body = {"id": f"r{i:06}", "content_type": "docker", "notes": {"team": f"t{i % 100}"},
                "distributor_config": {"repo_registry_id": f"bulk/r{i:06}"}}
        return "POST", "/api/v1/repositories", json.dumps(body).encode(), "application/json"
elif kind == "grants":
    login, lo, hi = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    def request(i):
        body = {"login": login, "resource": f"/repositories/r{i:06}", "operations": ["read"]}
        return "POST", "/api/v1/permissions/grant", json.dumps(body).encode(), "application/json"
else:
    name, lo, hi = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    manifest = open(sys.argv[7], "rb").read()
    def request(i):
        return ("PUT", f"/v2/{name}/manifests/t{i:05}", manifest,
                "application/vnd.docker.distribution.manifest.v2+json")
failed = []
def work(items):
    c = http.client.HTTPConnection(host, int(port), timeout=300)
    for i in items:
        method, path, body, ctype = request(i)
        for attempt in range(3):
            try:
                c.request(method, path, body=body,
                          headers={"Authorization": "Bearer " + token, "Content-Type": ctype})
                r = c.getresponse()
                data = r.read()
                break
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection(host, int(port), timeout=300)
                if attempt == 2:
                    raise
        if not 200 <= r.status < 300:
            failed.append(f"{method} {path}: {r.status} {data[:300]!r}")
            return
threads = [threading.Thread(target=work, args=(range(lo + k, hi, 8),)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if failed:
    sys.exit("\n".join(failed[:5]))
PY
# Orphan blobs: N files of 64 random bytes, named by their sha256.
cat > "$W/orphans.py" <<'PY'
import hashlib, os, sys
root, n = os.path.join(sys.argv[1], "blobs", "sha256"), int(sys.argv[2])
made = set()
for _ in range(n):
    data = os.urandom(64)
    h = hashlib.sha256(data).hexdigest()
    if h[:2] not in made:
        os.makedirs(os.path.join(root, h[:2]), exist_ok=True)
        made.add(h[:2])
    fd = os.open(os.path.join(root, h[:2], h), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
PY
# Unlink every file under a directory (stat'ed twice first, as a cleanup
# does); prints the microseconds per file.
cat > "$W/unlink.py" <<'PY'
import os, sys, time
root, n, t = sys.argv[1], 0, time.perf_counter()
for shard in os.listdir(root):
    for name in os.listdir(os.path.join(root, shard)):
        p = os.path.join(root, shard, name)
        os.stat(p); os.stat(p); os.unlink(p)
        n += 1
print(round((time.perf_counter() - t) * 1e6 / max(n, 1), 1))
PY

wrk_rps() { # URL -> requests/s (wrk, 2 threads, 32 connections, WRK_SECS)
    local out
    out=$(wrk -t2 -c32 -d"${WRK_SECS}s" -H "Accept: $ACCEPT" "$1")
    if grep -q "Non-2xx" <<<"$out"; then echo "wrk $1: non-2xx answers:" >&2; echo "$out" >&2; exit 1; fi
    awk '/^Requests\/sec/ {print $2}' <<<"$out"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
log "work directory $W; load average $LOAD_START; sizes: repositories [$SIZES] tags [$TAG_SIZES] blobs [$BLOB_SIZES]"

# ----------------------------------------------------------- repositories --
if [ -n "${SIZES// /}" ]; then
    # The reference: a server of 10 repositories, one of them published.
    new_server small
    api small -o /dev/null -XPOST "$(base small)/api/v1/repositories" -H content-type:application/json \
        -d '{"id": "get-app", "content_type": "docker", "distributor_config": {"repo_registry_id": "get/app", "auto_publish": true}}'
    push_image small get/app latest
    python3 "$W/bulk.py" repos "$(base small)" "$(cat "$W/small.token")" 0 9
    new_server big
    api big -o /dev/null -XPOST "$(base big)/api/v1/repositories" -H content-type:application/json \
        -d '{"id": "get-app", "content_type": "docker", "distributor_config": {"repo_registry_id": "get/app", "auto_publish": true}}'
    push_image big get/app latest
    # A user granted read on each repository, as pushes to new names grant
    # their pusher: its requests must not cost its number of permissions.
    api big -o /dev/null -XPOST "$(base big)/api/v1/users" -H content-type:application/json \
        -d "{\"login\": \"bot\", \"password\": \"$WHARF_ADMIN_PASSWORD\"}"
    # And one granted read on 10 of them (spread over the first size): its
    # catalog must not cost the protected repositories it may not read.
    api big -o /dev/null -XPOST "$(base big)/api/v1/users" -H content-type:application/json \
        -d "{\"login\": \"few\", \"password\": \"$WHARF_ADMIN_PASSWORD\"}"
    first=${SIZES%% *}
    for i in 0 1 2 3 4 5 6 7 8 9; do
        api big -o /dev/null -XPOST "$(base big)/api/v1/permissions/grant" -H content-type:application/json \
            -d "{\"login\": \"few\", \"resource\": \"/repositories/r$(printf %06d $((i * first / 10)))\", \"operations\": [\"read\"]}"
    done
    # Warm both (page cache, instance pools) once.
    wrk -t2 -c32 -d1s -H "Accept: $ACCEPT" "$(base small)/v2/get/app/manifests/latest" > /dev/null
    wrk -t2 -c32 -d1s -H "Accept: $ACCEPT" "$(base big)/v2/get/app/manifests/latest" > /dev/null

    have=0 have_notes=0 have_published=0
    for n in $SIZES; do
        log "repositories: creating r$(printf %06d "$have") .. r$(printf %06d $((n - 1)))"
        t0=$(now_ns)
        python3 "$W/bulk.py" repos "$(base big)" "$(cat "$W/big.token")" "$have" "$n"
        python3 "$W/bulk.py" grants "$(base big)" "$(cat "$W/big.token")" bot "$have" "$n"
        value repos bulk-create-rate "$n" "repositories/s" "$(per_second $((n - have)) "$t0")"
        have=$n

        log "repositories at $n: start-up (3 restarts)"
        : > "$W/samples/startup.txt"
        : > "$W/samples/startup-pull.txt"
        : > "$W/samples/startup-whole.txt"
        for round in 1 2 3; do
            stop_server big
            if [ "$round" = 1 ] && [ "$STORE" = sqlite ]; then
                python3 "$W/publish.py" "$W/big/wharf.db" "$have_published" "$n"
                have_published=$n
            fi
            sync
            # Then a pull of a published name (served while the
            # publications load), then the catalog (which waits for them all).
            start_server big "/v2/get/app/manifests/latest" "/v2/_catalog?n=1"
            echo "$STARTUP_MS" >> "$W/samples/startup.txt"
            echo "${READY_MS[0]}" >> "$W/samples/startup-pull.txt"
            echo "${READY_MS[1]}" >> "$W/samples/startup-whole.txt"
        done
        record repos startup "$n" ms "$W/samples/startup.txt"
        record repos startup-pull "$n" ms "$W/samples/startup-pull.txt"
        record repos startup-whole "$n" ms "$W/samples/startup-whole.txt"
        value repos rss-after-start "$n" MiB "$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')"
        B=$(base big) TOKEN=$(cat "$W/big.token")
        # Warm the restarted server before timing anything.
        wrk -t2 -c32 -d1s -H "Accept: $ACCEPT" "$B/v2/get/app/manifests/latest" > /dev/null

        log "repositories at $n: GET, list page, note page, create, push ($SAMPLES samples each)"
        cfg=$W/get.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" get GET "$B/api/v1/repositories/r$(printf %06d $(( (RANDOM * 32768 + RANDOM) % n )))" "$TOKEN"
        done
        batch "get-$n" "$cfg" get && record repos repo-get "$n" ms "$W/samples/get-$n.txt"
        cfg=$W/list.cfg
        last=$((n > 101 ? n - 101 : 1))
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" list GET "$B/api/v1/repositories?limit=100&after=r$(printf %06d $(( (RANDOM * 32768 + RANDOM) % last )))" "$TOKEN"
        done
        batch "list-$n" "$cfg" list && record repos repo-list "$n" ms "$W/samples/list-$n.txt"
        cfg=$W/note.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" note GET "$B/api/v1/repositories?limit=10&note=team=t7" "$TOKEN"
        done
        batch "note-$n" "$cfg" note && record repos repo-note "$n" ms "$W/samples/note-$n.txt"
        cfg=$W/create.cfg
        for k in $(seq 1 "$SAMPLES"); do
            f=$W/samples/create-body-$k.json
            printf '{"id": "new-%s-%s", "content_type": "docker", "notes": {"team": "t%s"}, "distributor_config": {"repo_registry_id": "new/%s-%s"}}' \
                "$n" "$k" $((k % 100)) "$n" "$k" > "$f"
            req "$cfg" create POST "$B/api/v1/repositories" "$TOKEN" "$f" application/json
        done
        batch "create-$n" "$cfg" create && record repos repo-create "$n" ms "$W/samples/create-$n.txt"
        rm -f "$W"/samples/create-body-*.json
        cfg=$W/push.cfg
        for k in $(seq 1 "$SAMPLES"); do
            name=push/s$n-$k
            req "$cfg" blob POST "$B/v2/$name/blobs/uploads/?digest=$CONFIG_DIGEST" "$TOKEN" "$W/config.json" application/octet-stream
            req "$cfg" blob POST "$B/v2/$name/blobs/uploads/?digest=$LAYER_DIGEST" "$TOKEN" "$W/layer.bin" application/octet-stream
            req "$cfg" put PUT "$B/v2/$name/manifests/latest" "$TOKEN" "$W/manifest.json" "$DOCKER_MANIFEST"
        done
        batch "push-$n" "$cfg" put && record repos manifest-push "$n" ms "$W/samples/push-$n.txt"
        # Every repository received a blob through its upload sessions (a
        # note each, written as the server writes them), and a HEAD asks
        # for a blob the repository neither serves nor received: the
        # registry looks up who received it (a HEAD before every upload).
        python3 "$W/notes.py" "$W/big/blobs/sessions" "$have_notes" "$n"
        have_notes=$n
        cfg=$W/head.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" head HEAD "$B/v2/get/app/blobs/sha256:$(printf '%064x' "$k$n")" "$TOKEN"
        done
        batch "head-$n" "$cfg" head 404 && record repos blob-head-missing "$n" ms "$W/samples/head-$n.txt"
        # A repository GET by the user holding a grant on every repository.
        bot=$(curl -sf -u "bot:$WHARF_ADMIN_PASSWORD" -XPOST "$B/api/v1/login" | jq -r .token)
        cfg=$W/bot.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" get GET "$B/api/v1/repositories/r$(printf %06d $(( (RANDOM * 32768 + RANDOM) % n )))" "$bot"
        done
        batch "bot-get-$n" "$cfg" get && record repos repo-get-many-grants "$n" ms "$W/samples/bot-get-$n.txt"
        # A catalog page by the user granted 10 of the protected
        # repositories, then by the one granted all of them.
        if [ "$STORE" = sqlite ]; then
            few=$(curl -sf -u "few:$WHARF_ADMIN_PASSWORD" -XPOST "$B/api/v1/login" | jq -r .token)
            got=$(curl -sf -H "Authorization: Bearer $few" "$B/v2/_catalog?n=1000" | jq '[.repositories[] | select(startswith("bulk/"))] | length')
            [ "$got" = 10 ] || { echo "the catalog of a user granted 10 protected repositories lists $got of them" >&2; exit 1; }
            for who in few bot; do
                cfg=$W/catalog.cfg
                for k in $(seq 1 "$SAMPLES"); do
                    req "$cfg" catalog GET "$B/v2/_catalog?n=100&last=bulk/r$(printf %06d $(( (RANDOM * 32768 + RANDOM) % n )))" "${!who}"
                done
                batch "catalog-$who-$n" "$cfg" catalog
            done
            record repos catalog-few-grants "$n" ms "$W/samples/catalog-few-$n.txt"
            record repos catalog-many-grants "$n" ms "$W/samples/catalog-bot-$n.txt"
        fi
        # Is the last push served?
        curl -sf -o /dev/null -H "Accept: $ACCEPT" "$B/v2/push/s$n-$SAMPLES/manifests/latest"

        log "repositories at $n: manifest GET under wrk, ${WRK_SECS} s rounds, alternated with the 10-repository server"
        : > "$W/samples/wrk-big.txt"; : > "$W/samples/wrk-small.txt"
        for _ in 1 2; do
            wrk_rps "$B/v2/get/app/manifests/latest" >> "$W/samples/wrk-big.txt"
            wrk_rps "$(base small)/v2/get/app/manifests/latest" >> "$W/samples/wrk-small.txt"
        done
        record repos manifest-get "$n" "req/s" "$W/samples/wrk-big.txt"
        record repos manifest-get-10-repositories "$n" "req/s" "$W/samples/wrk-small.txt"
    done
    stop_server big
    stop_server small
    [ "$KEEP" = 1 ] || rm -rf "$W/big" "$W/small"
fi

# ------------------------------------------------------------------- tags --
settings() { # NAME DISTRIBUTOR-CONFIG: set the repository NAME's distributor settings
    api "$1" -o /dev/null -XPATCH "$(base "$1")/api/v1/repositories/$1" -H content-type:application/json \
        -d "{\"distributor_config\": $2}"
}
if [ -n "${TAG_SIZES// /}" ]; then
    new_server tags
    B=$(base tags)
    api tags -o /dev/null -XPOST "$B/api/v1/repositories" -H content-type:application/json \
        -d '{"id": "tags", "content_type": "docker", "distributor_config": {"repo_registry_id": "scale/many", "auto_publish": false}}'
    push_blobs tags scale/many
    have=0
    for n in $TAG_SIZES; do
        log "tags: pushing t$(printf %05d "$have") .. t$(printf %05d $((n - 1)))"
        t0=$(now_ns)
        python3 "$W/bulk.py" tags "$B" "$(cat "$W/tags.token")" scale/many "$have" "$n" "$W/manifest.json"
        value tags bulk-push-rate "$n" "tags/s" "$(per_second $((n - have)) "$t0")"
        have=$n
        log "tags at $n: publish (3 runs), tags/list page, one more push ($SAMPLES samples)"
        : > "$W/samples/publish.txt"
        for _ in 1 2 3; do
            wait_task_ms tags "$(api tags -XPOST "$B/api/v1/repositories/tags/publish")" >> "$W/samples/publish.txt"
        done
        record tags publish "$n" ms "$W/samples/publish.txt"
        got=$(curl -sf "$B/v2/scale/many/tags/list?n=100000" | jq '.tags | length')
        [ "$got" -ge "$n" ] || { echo "tags/list shows $got tags, expected $n" >&2; exit 1; }
        cfg=$W/tags.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" list GET "$B/v2/scale/many/tags/list?n=100&last=t$(printf %05d $((n / 2)))" "$TOKEN"
        done
        batch "tags-list-$n" "$cfg" list && record tags tags-list "$n" ms "$W/samples/tags-list-$n.txt"
        cfg=$W/tagpush.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" put PUT "$B/v2/scale/many/manifests/extra-$n-$k" "$TOKEN" "$W/manifest.json" "$DOCKER_MANIFEST"
        done
        batch "tags-push-$n" "$cfg" put && record tags manifest-push "$n" ms "$W/samples/tags-push-$n.txt"
        # The same push with auto-publish on: it publishes before answering
        # (from the previous publication and the units the push changed).
        log "tags at $n: one more push with auto-publish ($SAMPLES samples)"
        settings tags '{"repo_registry_id": "scale/many", "auto_publish": true}'
        cfg=$W/tagpushpub.cfg
        for k in $(seq 1 "$SAMPLES"); do
            req "$cfg" put PUT "$B/v2/scale/many/manifests/published-$n-$k" "$TOKEN" "$W/manifest.json" "$DOCKER_MANIFEST"
        done
        batch "tags-push-published-$n" "$cfg" put &&
            record tags manifest-push-published "$n" ms "$W/samples/tags-push-published-$n.txt"
        curl -sf "$B/v2/scale/many/manifests/published-$n-$SAMPLES" -H "Accept: $DOCKER_MANIFEST" -o /dev/null ||
            { echo "a push with auto-publish is not served at once" >&2; exit 1; }
        settings tags '{"repo_registry_id": "scale/many", "auto_publish": false}'
        # A push naming a layer the repository holds (an earlier manifest
        # names it) but neither published nor received lately (its notes
        # removed, as a day later): the host asks the store whether the
        # repository holds it (one lookup of the blob index).
        log "tags at $n: a push naming a held, unpublished layer ($SAMPLES samples)"
        head -c "$(stat -c %s "$W/layer.bin")" /dev/urandom > "$W/held-layer.bin"
        held=$(digest_of "$W/held-layer.bin")
        api tags -o /dev/null -XPOST -H 'Content-Type: application/octet-stream' \
            --data-binary "@$W/held-layer.bin" "$B/v2/scale/many/blobs/uploads/?digest=$held"
        held_manifest() { # NAME: a manifest naming the held layer, annotated NAME
            jq -c --arg d "$held" --arg a "$1" '.layers[0].digest = $d | .annotations = {"k": $a}' \
                "$W/manifest.json" > "$W/held-$1.json"
        }
        held_manifest "base-$n"
        api tags -o /dev/null -XPUT -H "Content-Type: $DOCKER_MANIFEST" --data-binary "@$W/held-base-$n.json" \
            "$B/v2/scale/many/manifests/held-base-$n"
        rm -rf "$W/tags/blobs/sessions/received" "$W/tags/blobs/sessions/receivers"
        cfg=$W/heldpush.cfg
        for k in $(seq 1 "$SAMPLES"); do
            held_manifest "$n-$k"
            req "$cfg" put PUT "$B/v2/scale/many/manifests/held-$n-$k" "$TOKEN" "$W/held-$n-$k.json" "$DOCKER_MANIFEST"
        done
        batch "tags-push-held-$n" "$cfg" put && record tags manifest-push-held "$n" ms "$W/samples/tags-push-held-$n.txt"
    done
    stop_server tags
    [ "$KEEP" = 1 ] || rm -rf "$W/tags"
fi

# ------------------------------------------------------------------ blobs --
sample_rss() { # PID FILE: VmRSS in kB every 50 ms until killed
    while kill -0 "$1" 2>/dev/null; do
        awk '/^VmRSS/ {print $2}' "/proc/$1/status" >> "$2" 2>/dev/null || true
        sleep 0.05
    done
}
if [ -n "${BLOB_SIZES// /}" ]; then
    new_server blobs
    stop_server blobs
    for n in $BLOB_SIZES; do
        log "blobs: writing $n orphan blob files (server stopped)"
        rm -rf "$W/blobs/blobs/sha256"
        python3 "$W/orphans.py" "$W/blobs" "$n"
        sync
        start_server blobs
        B=$(base blobs)
        value blobs startup "$n" ms "$STARTUP_MS"
        code=$(curl -s -o "$W/fsck.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -XPOST "$B/api/v1/blobs/fsck")
        if [ "$code" = 202 ] || [ "$code" = 200 ]; then
            log "blobs at $n: fsck"
            ms=$(wait_task_ms blobs "$(cat "$W/fsck.json")")
            value blobs fsck "$n" s "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
            value blobs fsck-per-blob "$n" "µs" "$(awk -v ms="$ms" -v n="$n" 'BEGIN { printf "%.1f", ms * 1000 / n }')"
            corrupt=$(jq '.result.corrupt | length' "$W/last-task.json")
            [ "$corrupt" = 0 ] || { echo "fsck found $corrupt corrupt blobs" >&2; exit 1; }
        else
            log "blobs at $n: no fsck on this server (POST /api/v1/blobs/fsck answered $code); skipped"
        fi
        log "blobs at $n: orphan cleanup"
        pid=$(cat "$W/blobs.pid")
        : > "$W/samples/rss.txt"
        sample_rss "$pid" "$W/samples/rss.txt" &
        RSS_SAMPLER=$!
        ms=$(wait_task_ms blobs "$(api blobs -XPOST "$B/api/v1/orphans/cleanup?protection_minutes=0")")
        kill "$RSS_SAMPLER" 2>/dev/null || true
        wait "$RSS_SAMPLER" 2>/dev/null || true
        RSS_SAMPLER=""
        removed=$(find "$W/blobs/blobs/sha256" -type f | wc -l)
        [ "$removed" = 0 ] || { echo "cleanup left $removed of $n orphan blobs" >&2; exit 1; }
        value blobs cleanup "$n" s "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
        value blobs cleanup-peak-rss "$n" MiB "$(sort -n "$W/samples/rss.txt" | tail -1 | awk '{ printf "%.1f", $1 / 1024 }')"
        value blobs peak-rss-since-start "$n" MiB "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
        value blobs cleanup-per-blob "$n" "µs" "$(awk -v ms="$ms" -v n="$n" 'BEGIN { printf "%.1f", ms * 1000 / n }')"
        jq -c '.result' "$W/last-task.json" > "$W/cleanup-result-$n.json"
        stop_server blobs
        # The file system's own floor: the same files (up to 20,000 of them)
        # stat'ed twice and unlinked by python, per file.
        floor=$((n < 20000 ? n : 20000))
        rm -rf "$W/floor" && python3 "$W/orphans.py" "$W/floor" "$floor" && sync
        value blobs unlink-floor-per-file "$n" "µs" "$(python3 "$W/unlink.py" "$W/floor/blobs/sha256")"
        rm -rf "$W/floor"
    done
fi

# ----------------------------------------------------------------- report --
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
jq -cn --arg started "$STARTED" --arg finished "$(date -u +%Y-%m-%dT%H:%MZ)" \
    --arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg cores "$(nproc)" --arg cpu "$CPU" --arg kernel "$(uname -r)" \
    --arg mem "$(free -g | awk '/^Mem/ {print $2 " GB"}')" \
    --argjson quick "$QUICK" --argjson samples "$SAMPLES" --argjson wrk "$WRK_SECS" \
    --arg command "scripts/bench-scale.sh$ARGS" --arg store "$STORE" \
    '{started: $started, finished: $finished, load_start: $load_start, load_end: $load_end,
      cores: $cores, cpu: $cpu, kernel: $kernel, memory: $mem, quick: ($quick == 1),
      samples: $samples, wrk_seconds: $wrk, command: $command, store: $store}' > "$W/meta.json"
mkdir -p "$OUT"
python3 scripts/bench_scale_chart.py --results "$RESULTS" --meta "$W/meta.json" --out "$OUT" --docs "$DOCS"
log "done: $OUT/scale.json, $OUT/scale-*.svg${DOCS:+, $DOCS}"
