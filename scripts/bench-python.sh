#!/usr/bin/env bash
# Speed figures of the Python packages content type (docs/python-packages.md,
# "Speed"), all on 127.0.0.1 in one run:
#   - installing the ~22 MB Python component into a running server: time, and
#     the server's peak RSS before and after;
#   - sync of a 1,001-file feed and publish;
#   - a simple-index GET of a project with 1,000 files, and a 50 MiB wheel
#     download, against nginx serving the very same bytes;
#   - a warm call through the Python plugin against one through the Rust file
#     plugin (both small blob answers).
# Needs target/release/wharf (or WHARF_BIN) and scripts/build-python-plugins.sh
# run before; installs nginx-light with apt when missing.
# Usage: scripts/bench-python.sh [REQUESTS]   (default 500 per measurement)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
N=${1:-500}
WHARF=${WHARF_BIN:-$ROOT/target/release/wharf}
PY=$ROOT/target/python-venv/bin/python
PLUGIN=$ROOT/target/plugins-extra/python.wasm
for f in "$WHARF" "$PY" "$PLUGIN"; do
    [ -e "$f" ] || { echo "bench-python.sh: $f is missing: build first (make build; scripts/build-python-plugins.sh)" >&2; exit 1; }
done
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "==> installing nginx-light"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

DIR=$(mktemp -d /tmp/wharf-bench-python.XXXXXX)
WHARF_PID=""
NGINX_PID=""
cleanup() {
    [ -n "$WHARF_PID" ] && kill "$WHARF_PID" 2>/dev/null && wait "$WHARF_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "==> the feed: project bench with 1,000 wheels, project big with one 50 MiB wheel"
"$PY" plugins/python/tests/make_dists.py bench-tree "$DIR/tree" 1000 50 >/dev/null
# nginx's workers (www-data) read the tree.
chmod 755 "$DIR"
chmod -R a+rX "$DIR/tree"

NPORT=$(free_port)
mkdir -p "$DIR/nginx"
cat > "$DIR/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path $DIR/nginx/body;
    proxy_temp_path $DIR/nginx/proxy;
    fastcgi_temp_path $DIR/nginx/fastcgi;
    uwsgi_temp_path $DIR/nginx/uwsgi;
    scgi_temp_path $DIR/nginx/scgi;
    types { text/html html; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NPORT;
        root $DIR/tree;
        index index.html;
    }
}
CONF
"$NGINX" -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx" &
NGINX_PID=$!

WPORT=$(free_port)
BASE=http://127.0.0.1:$WPORT
PASSWORD=bench-password-1
WHARF_ADMIN_PASSWORD=$PASSWORD "$WHARF" serve --listen "127.0.0.1:$WPORT" --data-dir "$DIR/data" \
    --allow-outbound 127.0.0.1/32 > "$DIR/wharf.log" 2>&1 &
WHARF_PID=$!
for _ in $(seq 1 300); do curl -sf "$BASE/api/v1/status" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$NPORT/simple/" >/dev/null && break; sleep 0.1; done

export BASE PASSWORD PLUGIN N WHARF_PID NPORT DIR
"$PY" - <<'PYEOF'
import http.client, json, os, statistics, subprocess, threading, time, urllib.request, base64

BASE, N = os.environ["BASE"], int(os.environ["N"])
PID, NPORT, DIR = os.environ["WHARF_PID"], int(os.environ["NPORT"]), os.environ["DIR"]
WPORT = int(BASE.rsplit(":", 1)[1])
auth = "Basic " + base64.b64encode(b"admin:" + os.environ["PASSWORD"].encode()).decode()

def api(method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Authorization": auth, "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")

def task(t):
    while True:
        t = api("GET", f"/api/v1/tasks/{t['id']}")
        if t["state"] in ("finished", "error", "canceled"):
            assert t["state"] == "finished", t
            return t
        time.sleep(0.05)

def mem():
    status = open(f"/proc/{PID}/status").read()
    get = lambda k: int(next(l.split()[1] for l in status.splitlines() if l.startswith(k)))
    return get("VmHWM:") // 1024, get("VmRSS:") // 1024

hwm0, rss0 = mem()
t0 = time.monotonic()
with open(os.environ["PLUGIN"], "rb") as f:
    info = api("POST", "/api/v1/plugins", f.read(), "application/wasm")
install = time.monotonic() - t0
hwm1, rss1 = mem()
print(f"install of python.wasm ({os.path.getsize(os.environ['PLUGIN']) >> 20} MiB): {install:.1f} s "
      f"(server load_ms {info.get('load_ms', 0):.0f}); server peak RSS {hwm0} MiB before, {hwm1} MiB after; RSS now {rss1} MiB")

api("POST", "/api/v1/repositories", {"id": "bench", "content_type": "python",
    "importer_config": {"feed": f"http://127.0.0.1:{NPORT}/simple/"}})
t0 = time.monotonic()
r = task(api("POST", "/api/v1/repositories/bench/sync", {}))
sync_s = time.monotonic() - t0
t0 = time.monotonic()
task(api("POST", "/api/v1/repositories/bench/publish", {}))
pub_s = time.monotonic() - t0
print(f"sync of 1,001 files (55 MB) from nginx: {sync_s:.1f} s ({r['result']['message']}); publish {pub_s:.2f} s")
hwm2, rss2 = mem()
print(f"server peak RSS after sync and publish: {hwm2} MiB; RSS now {rss2} MiB")

# nginx serves the very bytes Wharf serves for the project page.
page = urllib.request.urlopen(f"{BASE}/pypi/bench/simple/bench/").read()
os.makedirs(f"{DIR}/tree/same/bench", exist_ok=True)
open(f"{DIR}/tree/same/bench/index.html", "wb").write(page)
os.chmod(f"{DIR}/tree/same", 0o755); os.chmod(f"{DIR}/tree/same/bench", 0o755)
os.chmod(f"{DIR}/tree/same/bench/index.html", 0o644)
big = "big-1.0-py3-none-any.whl"

def measure(port, path, n, threads=1, accept=None):
    lat = []
    lock = threading.Lock()
    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        headers = {"Accept": accept} if accept else {}
        for _ in range(k):
            t = time.perf_counter()
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, (path, r.status, body[:200])
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)
    worker(min(20, n))  # warm up
    lat.clear()
    start = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.perf_counter() - start
    lat.sort()
    return (statistics.mean(lat) * 1000, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000,
            len(lat) / wall)

def row(label, m):
    print(f"  {label:<44} mean {m[0]:7.3f} ms  p50 {m[1]:7.3f} ms  p99 {m[2]:7.3f} ms  {m[3]:8.0f} req/s")

print(f"simple-index page of a project with 1,000 files ({len(page)} bytes), {N} GETs, keep-alive:")
row("wharf /pypi/bench/simple/bench/ (1 client)", measure(WPORT, "/pypi/bench/simple/bench/", N))
row("nginx, same bytes (1 client)", measure(NPORT, "/same/bench/", N))
row("wharf (4 clients)", measure(WPORT, "/pypi/bench/simple/bench/", N, 4))
row("nginx (4 clients)", measure(NPORT, "/same/bench/", N, 4))
row("wharf, PEP 691 JSON (1 client)", measure(WPORT, "/pypi/bench/simple/bench/", N,
    accept="application/vnd.pypi.simple.v1+json"))

def download(url, times=5):
    speeds = []
    for _ in range(times):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{time_total}", url],
                             capture_output=True, text=True, check=True).stdout.split()
        speeds.append((float(out[0]) / (1 << 20), float(out[1])))
    speeds.sort()
    return speeds[len(speeds) // 2]
w = download(f"{BASE}/pypi/bench/files/{big}")
n = download(f"http://127.0.0.1:{NPORT}/files/{big}")
print(f"50 MiB wheel download (curl, median of 5): wharf {w[0]:.0f} MiB/s ({w[1]*1000:.0f} ms), nginx {n[0]:.0f} MiB/s ({n[1]*1000:.0f} ms)")

# Warm calls: a small answer through the Python plugin vs the Rust file plugin.
api("POST", "/api/v1/repositories", {"id": "small", "content_type": "file"})
up = api("POST", "/api/v1/uploads", {})
api("PUT", f"/api/v1/uploads/{up['id']}?offset=0", b"hello\n", "application/octet-stream")
task(api("POST", "/api/v1/repositories/small/import", {"upload_id": up["id"], "params": {"relative_path": "a.txt"}}))
task(api("POST", "/api/v1/repositories/small/publish", {}))
print(f"warm calls (a small blob answer), {N} GETs, 1 client, keep-alive:")
row("python plugin: /pypi/bench/simple/big/", measure(WPORT, "/pypi/bench/simple/big/", N))
row("rust file plugin: /files/small/a.txt", measure(WPORT, "/files/small/a.txt", N))
row("python plugin: /pypi/bench/files/<wheel>", measure(WPORT, "/pypi/bench/files/bench-1.0.7-py3-none-any.whl", N))
row("nginx: /files/<wheel>", measure(NPORT, "/files/bench-1.0.7-py3-none-any.whl", N))
hwm3, rss3 = mem()
print(f"server peak RSS at the end: {hwm3} MiB; RSS now {rss3} MiB")
PYEOF
