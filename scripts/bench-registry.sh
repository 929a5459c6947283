#!/usr/bin/env bash
# Wharf's registry side against CNCF distribution (`docker-registry`) and
# against nginx serving the same bytes as static files (the machine's limit
# for serving bytes: `sendfile on`, `access_log off`; the reference is
# nginx's default single worker (no worker_processes setting), and one
# worker per core is measured beside it), side by side on loopback in one
# run:
#
#   1. manifest GET by tag under wrk (64 connections, docker's Accept header):
#      requests/s, p50, p99;
#   2. blob GET throughput of a 128 MiB layer (wrk, 4 connections);
#   3. mirroring a 20-layer image (~160 MiB) out of distribution: a Wharf
#      `sync` task on an empty server vs `skopeo copy` to a local `dir:`
#      (hyperfine, fresh destination each run);
#   4. pulling that image through a pull-through repository (layers on
#      demand): the first pull on an empty server vs the same `skopeo copy`
#      straight from distribution; a cached pull vs a pull of the same image
#      published in Wharf (`skopeo copy` to `dir:`, hyperfine).
#
# distribution is filled with `skopeo copy` of the bench images; Wharf syncs
# from it, so both serve identical manifests and blobs.
#
# Usage: scripts/bench-registry.sh [--duration SECONDS] [--runs N] [--serving-only] [--keep]
#   --duration      wrk duration per measurement (default 10)
#   --runs          hyperfine runs of each mirror command (default 3)
#   --serving-only  measure 1 and 2 only (no mirroring, no pull-through)
#   --keep          keep the work directory (images, data, logs)
# Uses $WHARF_BIN and $WHARF_PLUGIN_DIR when set, else target/release/wharf and
# target/plugins (built if missing). Needs wrk, nginx (Debian's nginx-light),
# hyperfine, skopeo, umoci, docker-registry, curl, jq. Prints a Markdown
# table ready for docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

DURATION=10
RUNS=3
KEEP=0
SERVING_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --serving-only) SERVING_ONLY=1; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "bench-registry.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

export PATH="$PATH:/usr/sbin"
for cmd in wrk nginx hyperfine skopeo umoci docker-registry curl jq; do
    command -v "$cmd" >/dev/null || { echo "bench-registry.sh: $cmd not found" >&2; exit 1; }
done
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
# The servers started here create their first administrator with this password.
export WHARF_ADMIN_PASSWORD=bench-admin-password
# Their feed (distribution) is on loopback, which outbound requests may not
# reach by default.
export WHARF_ALLOW_OUTBOUND=127.0.0.1/32
PLUGIN_DIR=${WHARF_PLUGIN_DIR:-$ROOT/target/plugins}
if [ ! -x "$WHARF" ] || [ ! -f "$PLUGIN_DIR/docker.wasm" ]; then
    echo "==> building wharf and the plugins"
    scripts/build-plugins.sh
    cargo build --release -p wharf
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for f in "$W"/nginx/*/nginx.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    [ -f "$W/wharf-sync.pid" ] && kill "$(cat "$W/wharf-sync.pid")" 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1; }
wait_http() { # url
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "bench-registry.sh: $1 did not come up" >&2
    exit 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "==> bench images in $W/images (load average: $LOAD_BEFORE)"
scripts/make-test-images.sh --bench "$W/images" > "$W/images.log"

# ---------------------------------------------------------------- servers --
DIST_PORT=$(free_port)
DIST=127.0.0.1:$DIST_PORT
cat > "$W/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/distribution
  delete:
    enabled: true
http:
  addr: $DIST
EOF
docker-registry serve "$W/distribution.yml" > "$W/distribution.log" 2>&1 &
PIDS+=($!)
wait_http "http://$DIST/v2/"

WHARF_PORT=$(free_port)
WH=127.0.0.1:$WHARF_PORT
RUST_LOG=warn "$WHARF" serve --listen "$WH" --data-dir "$W/wharf" --plugin-dir "$PLUGIN_DIR" \
    > "$W/wharf.log" 2>&1 &
PIDS+=($!)
wait_http "http://$WH/healthz"
TOKEN=$(curl -sf -u "admin:$WHARF_ADMIN_PASSWORD" -XPOST "http://$WH/api/v1/login" | jq -r .token)
api() { curl -sf -H "Authorization: Bearer $TOKEN" "$@"; }

echo "==> filling distribution ($DIST) with skopeo"
for img in many large; do
    skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
        "docker-archive:$W/images/bench-$img.tar" "docker://$DIST/bench/$img:latest"
done

# Wait for a task; print its record.
wait_task() { # base task-json
    local base=$1 id state t
    id=$(jq -r .id <<<"$2")
    for _ in $(seq 1 30000); do
        t=$(api "$base/api/v1/tasks/$id")
        state=$(jq -r .state <<<"$t")
        case $state in finished|error|canceled) echo "$t"; return 0 ;; esac
        sleep 0.02
    done
    echo "task $id did not end" >&2
    return 1
}
mirror() { # base repo-id upstream-name
    local base=$1 t
    api -XPOST "$base/api/v1/repositories" -H content-type:application/json -d "{
        \"id\": \"$2\", \"content_type\": \"docker\",
        \"importer_config\": {\"feed\": \"http://$DIST\", \"upstream_name\": \"$3\"},
        \"distributor_config\": {\"repo_registry_id\": \"$3\"}}" > /dev/null
    for action in sync publish; do
        t=$(wait_task "$base" "$(api -XPOST "$base/api/v1/repositories/$2/$action")")
        if [ "$(jq -r .state <<<"$t")" != finished ]; then
            echo "$action of $2 failed: $t" >&2
            exit 1
        fi
    done
}
echo "==> Wharf ($WH) mirrors bench/large from distribution"
mirror "http://$WH" large bench/large

# Same bytes on both sides?
ACCEPT='application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v1+prettyjws, application/json'
MANIFEST_PATH=/v2/bench/large/manifests/latest
d1=$(curl -sf -H "Accept: $ACCEPT" "http://$DIST$MANIFEST_PATH" | sha256sum | cut -d' ' -f1)
d2=$(curl -sf -H "Accept: $ACCEPT" "http://$WH$MANIFEST_PATH" | sha256sum | cut -d' ' -f1)
[ "$d1" = "$d2" ] || { echo "manifests differ: $d1 vs $d2" >&2; exit 1; }
LAYER=$(curl -sf -H "Accept: $ACCEPT" "http://$WH$MANIFEST_PATH" | jq -r '.layers | max_by(.size) | .digest')
LAYER_SIZE=$(curl -sf -H "Accept: $ACCEPT" "http://$WH$MANIFEST_PATH" | jq -r '.layers | max_by(.size) | .size')
BLOB_PATH=/v2/bench/large/blobs/$LAYER

# nginx: the manifest and the layer as static files under the same paths,
# served with the manifest's media type.
mkdir -p "$W/nginx/root/v2/bench/large/manifests" "$W/nginx/root/v2/bench/large/blobs"
curl -sf -H "Accept: $ACCEPT" -o "$W/nginx/root$MANIFEST_PATH" "http://$WH$MANIFEST_PATH"
curl -sf -o "$W/nginx/root$BLOB_PATH" "http://$WH$BLOB_PATH"
# nginx's workers run as an unprivileged user: let them read the root.
chmod a+x "$W"
# start_nginx NAME WORKERS: nginx on a free port, serving the static root
# (plus the manifest's media type as the default); prints its address.
start_nginx() {
    local port dir=$W/nginx/$1
    port=$(free_port)
    mkdir -p "$dir/tmp"
    cat > "$dir/nginx.conf" <<EOF
daemon off;
worker_processes $2;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type application/vnd.docker.distribution.manifest.v2+json;
    client_body_temp_path $dir/tmp;
    server { listen 127.0.0.1:$port; root $W/nginx/root; }
}
EOF
    chmod -R a+rX "$W/nginx"
    # Run in $(...): cleanup stops it by its pid file.
    nginx -e "$dir/error.log" -c "$dir/nginx.conf" > "$dir/stdout.log" 2>&1 &
    wait_http "http://127.0.0.1:$port$MANIFEST_PATH" >&2
    echo "127.0.0.1:$port"
}
NG=$(start_nginx one 1)
NG2=$(start_nginx per-core auto)
d3=$(curl -sf "http://$NG$MANIFEST_PATH" | sha256sum | cut -d' ' -f1)
[ "$d1" = "$d3" ] || { echo "nginx serves other manifest bytes: $d3" >&2; exit 1; }

for host in "$DIST" "$WH" "$NG" "$NG2"; do
    got=$(curl -sf "http://$host$BLOB_PATH" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$LAYER" ] || { echo "$host serves wrong bytes for $LAYER" >&2; exit 1; }
done

# --------------------------------------------------------------- measure --
# wrk's latency lines are like "50%  1.23ms"; normalise to milliseconds.
to_ms() {
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } \
           else if (v ~ /m$/) { sub(/m$/,"",v); v*=60000 } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'
}
to_mbs() { # "123.45MB" per second -> MB/s (MiB as wrk prints them)
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

echo "==> manifest GET by tag: wrk -t2 -c64 -d${DURATION}s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
# Warm both (page cache, Wharf's instance pool), then measure distribution first.
wrk -t2 -c64 -d2s -H "Accept: $ACCEPT" "http://$DIST$MANIFEST_PATH" > /dev/null
wrk -t2 -c64 -d2s -H "Accept: $ACCEPT" "http://$WH$MANIFEST_PATH" > /dev/null
wrk -t2 -c64 -d2s -H "Accept: $ACCEPT" "http://$NG$MANIFEST_PATH" > /dev/null
wrk -t2 -c64 -d2s -H "Accept: $ACCEPT" "http://$NG2$MANIFEST_PATH" > /dev/null
run_wrk manifest-nginx 64 "http://$NG$MANIFEST_PATH" "Accept: $ACCEPT"
M_N_RPS=$RPS M_N_P50=$P50 M_N_P99=$P99
run_wrk manifest-nginx-per-core 64 "http://$NG2$MANIFEST_PATH" "Accept: $ACCEPT"
M_N2_RPS=$RPS
run_wrk manifest-distribution 64 "http://$DIST$MANIFEST_PATH" "Accept: $ACCEPT"
M_D_RPS=$RPS M_D_P50=$P50 M_D_P99=$P99
run_wrk manifest-wharf 64 "http://$WH$MANIFEST_PATH" "Accept: $ACCEPT"
M_W_RPS=$RPS M_W_P50=$P50 M_W_P99=$P99

echo "==> blob GET of a $((LAYER_SIZE / 1048576)) MiB layer: wrk -t2 -c4 -d${DURATION}s"
run_wrk blob-nginx 4 "http://$NG$BLOB_PATH"
B_N_MBS=$MBS
run_wrk blob-nginx-per-core 4 "http://$NG2$BLOB_PATH"
B_N2_MBS=$MBS
run_wrk blob-distribution 4 "http://$DIST$BLOB_PATH"
B_D_MBS=$MBS B_D_RPS=$RPS
run_wrk blob-wharf 4 "http://$WH$BLOB_PATH"
B_W_MBS=$MBS B_W_RPS=$RPS

if [ "$SERVING_ONLY" = 0 ]; then
echo "==> mirroring bench/many (20 layers) out of distribution, $RUNS runs each"
# Wharf: a fresh server (empty blob store) per run; the timed command is the
# sync task from submission to its end.
cat > "$W/wharf-fresh.sh" <<EOF
#!/usr/bin/env bash
set -e
[ -f "$W/wharf-sync.pid" ] && kill "\$(cat "$W/wharf-sync.pid")" 2>/dev/null && sleep 0.2
rm -rf "$W/wharf-sync"
port=\$(( $WHARF_PORT + 1 ))
RUST_LOG=warn "$WHARF" serve --listen 127.0.0.1:\$port --data-dir "$W/wharf-sync" \
    --plugin-dir "$PLUGIN_DIR" >> "$W/wharf-sync.log" 2>&1 &
echo \$! > "$W/wharf-sync.pid"
for _ in \$(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:\$port/healthz && break; sleep 0.05; done
curl -sf -u "admin:$WHARF_ADMIN_PASSWORD" -XPOST http://127.0.0.1:\$port/api/v1/login | jq -r .token > "$W/sync-token"
curl -sf -H "Authorization: Bearer \$(cat "$W/sync-token")" \
    -XPOST http://127.0.0.1:\$port/api/v1/repositories -H content-type:application/json -d '{
  "id": "many", "content_type": "docker",
  "importer_config": {"feed": "http://$DIST", "upstream_name": "bench/many"}}' > /dev/null
EOF
cat > "$W/wharf-sync.sh" <<EOF
#!/usr/bin/env bash
set -e
base=http://127.0.0.1:$((WHARF_PORT + 1))
auth="Authorization: Bearer \$(cat "$W/sync-token")"
id=\$(curl -sf -H "\$auth" -XPOST \$base/api/v1/repositories/many/sync | jq -r .id)
for _ in \$(seq 1 30000); do
    t=\$(curl -sf -H "\$auth" \$base/api/v1/tasks/\$id)
    case \$(jq -r .state <<<"\$t") in
        finished) echo "\$t" > "$W/last-sync.json"; exit 0 ;;
        error|canceled) echo "\$t" >&2; exit 1 ;;
    esac
    sleep 0.01
done
exit 1
EOF
chmod +x "$W/wharf-fresh.sh" "$W/wharf-sync.sh"
hyperfine --runs "$RUNS" --export-json "$W/mirror.json" --style basic \
    --prepare "$W/wharf-fresh.sh" -n "wharf sync" "$W/wharf-sync.sh" \
    --prepare "rm -rf $W/copy" -n "skopeo copy" \
    "skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://$DIST/bench/many:latest dir:$W/copy" \
    > "$W/hyperfine.txt"
S_W=$(jq -r '.results[] | select(.command == "wharf sync") | .mean' "$W/mirror.json")
S_S=$(jq -r '.results[] | select(.command == "skopeo copy") | .mean' "$W/mirror.json")
S_W_SD=$(jq -r '.results[] | select(.command == "wharf sync") | .stddev // 0' "$W/mirror.json")
S_S_SD=$(jq -r '.results[] | select(.command == "skopeo copy") | .stddev // 0' "$W/mirror.json")
SYNC_BYTES=$(jq -r .result.bytes_stored "$W/last-sync.json")

echo "==> pulling bench/many through a pull-through repository, $RUNS runs each"
# First pulls: a fresh server whose pull-through repository `hub` has
# pulled nothing, per run.
PT_PORT=$((WHARF_PORT + 2))
cat > "$W/wharf-pt-fresh.sh" <<EOF
#!/usr/bin/env bash
set -e
[ -f "$W/wharf-pt.pid" ] && kill "\$(cat "$W/wharf-pt.pid")" 2>/dev/null && sleep 0.2
rm -rf "$W/wharf-pt" "$W/pt-copy"
RUST_LOG=warn "$WHARF" serve --listen 127.0.0.1:$PT_PORT --data-dir "$W/wharf-pt" \
    --plugin-dir "$PLUGIN_DIR" >> "$W/wharf-pt.log" 2>&1 &
echo \$! > "$W/wharf-pt.pid"
for _ in \$(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:$PT_PORT/healthz && break; sleep 0.05; done
token=\$(curl -sf -u "admin:$WHARF_ADMIN_PASSWORD" -XPOST http://127.0.0.1:$PT_PORT/api/v1/login | jq -r .token)
curl -sf -H "Authorization: Bearer \$token" \
    -XPOST http://127.0.0.1:$PT_PORT/api/v1/repositories -H content-type:application/json -d '{
  "id": "hub", "content_type": "docker",
  "importer_config": {"feed": "http://$DIST", "download_policy": "on_demand"},
  "distributor_config": {"repo_registry_id": "hub", "pull_through": true}}' > /dev/null
EOF
chmod +x "$W/wharf-pt-fresh.sh"
hyperfine --runs "$RUNS" --export-json "$W/pull-through.json" --style basic \
    --prepare "$W/wharf-pt-fresh.sh" -n "first pull through wharf" \
    "skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://127.0.0.1:$PT_PORT/hub/bench/many:latest dir:$W/pt-copy" \
    --prepare "rm -rf $W/copy" -n "pull from distribution" \
    "skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://$DIST/bench/many:latest dir:$W/copy" \
    > "$W/hyperfine-pt.txt"
# Cached pulls from the last of those servers (everything pulled once),
# against the same image synced and published in the main server.
mirror "http://$WH" many bench/many
sync  # the sync's writes reach the disk before anything is timed
hyperfine --runs "$RUNS" --warmup 1 --export-json "$W/cached.json" --style basic \
    --prepare "rm -rf $W/pt-copy" -n "cached pull through wharf" \
    "skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://127.0.0.1:$PT_PORT/hub/bench/many:latest dir:$W/pt-copy" \
    --prepare "rm -rf $W/copy" -n "pull of published content" \
    "skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://$WH/bench/many:latest dir:$W/copy" \
    > "$W/hyperfine-cached.txt"
kill "$(cat "$W/wharf-pt.pid")" 2>/dev/null || true
mean() { jq -r --arg c "$2" '.results[] | select(.command == $c) | .mean' "$1"; }
sd() { jq -r --arg c "$2" '.results[] | select(.command == $c) | .stddev // 0' "$1"; }
P_W=$(mean "$W/pull-through.json" "first pull through wharf") P_W_SD=$(sd "$W/pull-through.json" "first pull through wharf")
P_D=$(mean "$W/pull-through.json" "pull from distribution") P_D_SD=$(sd "$W/pull-through.json" "pull from distribution")
C_W=$(mean "$W/cached.json" "cached pull through wharf") C_W_SD=$(sd "$W/cached.json" "cached pull through wharf")
C_P=$(mean "$W/cached.json" "pull of published content") C_P_SD=$(sd "$W/cached.json" "pull of published content")
fi

# ---------------------------------------------------------------- report --
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
# The condition is awk code (passed with -v it would be a string, always true).
verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "NOT met"; fi; }
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
cat <<EOF

### Run of $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores ($CPU), $(uname -r)

wrk and hyperfine ran on the same cores as the servers. docker-registry
$(docker-registry --version 2>/dev/null | awk '{print $3}'), skopeo $(skopeo --version | awk '{print $3}'), nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'), load average at the start: $LOAD_BEFORE.

| measurement | nginx (static files, 1 worker) | Wharf | Wharf / nginx | target | | nginx, a worker per core | Wharf / it |
| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |
| manifest GET by tag, req/s (wrk, 64 conns, ${DURATION} s) | $M_N_RPS | $M_W_RPS | $(ratio "$M_W_RPS" "$M_N_RPS") | ≥ 0.8× | $(verdict "$M_W_RPS >= 0.8 * $M_N_RPS") | $M_N2_RPS | $(ratio "$M_W_RPS" "$M_N2_RPS") |
| manifest GET p50 / p99 (ms) | $M_N_P50 / $M_N_P99 | $M_W_P50 / $M_W_P99 | | | | | |
| blob GET, $((LAYER_SIZE / 1048576)) MiB layer, MiB/s (wrk, 4 conns) | $B_N_MBS | $B_W_MBS | $(ratio "$B_W_MBS" "$B_N_MBS") | ≥ 0.95× | $(verdict "$B_W_MBS >= 0.95 * $B_N_MBS") | $B_N2_MBS | $(ratio "$B_W_MBS" "$B_N2_MBS") |

| measurement | distribution | Wharf | Wharf / distribution | target | |
| --- | ---: | ---: | ---: | --- | --- |
| manifest GET by tag, req/s (wrk, 64 conns, ${DURATION} s) | $M_D_RPS | $M_W_RPS | $(ratio "$M_W_RPS" "$M_D_RPS") | ≥ 10× | $(verdict "$M_W_RPS >= 10 * $M_D_RPS") |
| manifest GET p50 / p99 (ms) | $M_D_P50 / $M_D_P99 | $M_W_P50 / $M_W_P99 | | Wharf p99 < distribution p50 | $(verdict "$M_W_P99 < $M_D_P50") |
| blob GET, $((LAYER_SIZE / 1048576)) MiB layer, MiB/s (wrk, 4 conns) | $B_D_MBS | $B_W_MBS | $(ratio "$B_W_MBS" "$B_D_MBS") | ≥ 1× | $(verdict "$B_W_MBS >= $B_D_MBS") |
EOF
[ "$SERVING_ONLY" = 1 ] && exit 0
cat <<EOF
| mirror 20-layer image ($((SYNC_BYTES / 1048576)) MiB), s (mean ± sd of $RUNS): skopeo copy → dir: vs Wharf sync | $(printf '%.2f ± %.2f' "$S_S" "$S_S_SD") | $(printf '%.2f ± %.2f' "$S_W" "$S_W_SD") | $(ratio "$S_W" "$S_S") | ≤ 1× (time) | $(verdict "$S_W <= $S_S") |
| first pull of the 20-layer image, s (skopeo copy → dir:): from distribution vs through a Wharf pull-through repository (layers on demand, empty server) | $(printf '%.2f ± %.2f' "$P_D" "$P_D_SD") | $(printf '%.2f ± %.2f' "$P_W" "$P_W_SD") | $(ratio "$P_W" "$P_D") | ≤ 1.2× (time) | $(verdict "$P_W <= 1.2 * $P_D") |

| measurement | published in Wharf | cached in a pull-through repository | cached / published | target | |
| --- | ---: | ---: | ---: | --- | --- |
| pull of the 20-layer image, s (skopeo copy → dir:) | $(printf '%.2f ± %.2f' "$C_P" "$C_P_SD") | $(printf '%.2f ± %.2f' "$C_W" "$C_W_SD") | $(ratio "$C_W" "$C_P") | ≤ 1.1× (time) | $(verdict "$C_W <= 1.1 * $C_P") |
EOF
