#!/usr/bin/env bash
# The whole Wharf test suite in one command, as root on Debian 12: installs what
# the tests need, builds the plugins and the host, starts a private dockerd
# and slapd (LDAP),
# builds the test images, and runs `cargo test --release --workspace`.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -- --nocapture).
# Works on a fresh machine (CI, via .ci/run) and on a dev machine alike.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

phase() { echo; echo "==> [test.sh] $*"; }

# ---------------------------------------------------------------- packages --
# command (or path) -> Debian package
declare -A NEEDED=(
    [/usr/bin/docker]=docker.io
    [dockerd]=docker.io
    [containerd]=docker.io
    [podman]=podman
    [skopeo]=skopeo
    [umoci]=umoci
    [/bin/busybox]=busybox-static
    [docker-registry]=docker-registry
    [jq]=jq
    [curl]=curl
    [openssl]=openssl
    [slapd]=slapd
    [ldapadd]=ldap-utils
    [/usr/lib/rabbitmq/bin/rabbitmq-server]=rabbitmq-server
    [/usr/bin/chromium]=chromium
    [/usr/bin/chromedriver]=chromium-driver
    [/usr/bin/tinyproxy]=tinyproxy
)
missing=()
for cmd in "${!NEEDED[@]}"; do
    if [[ $cmd == /* ]]; then [ -x "$cmd" ] || missing+=("$cmd"); else
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); fi
done
# Python modules (the email listener tests run a real SMTP server, aiosmtpd).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=("python3-aiosmtpd")
if [ ${#missing[@]} -eq 0 ]; then
    phase "packages: all present, skipping apt"
else
    phase "packages: missing ${missing[*]}; installing with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update
    apt-get -o DPkg::Lock::Timeout=600 install -y \
        docker.io podman skopeo umoci busybox-static docker-registry jq curl openssl \
        slapd ldap-utils rabbitmq-server python3-aiosmtpd chromium chromium-driver tinyproxy
fi

# ------------------------------------------------------------------ builds --
phase "building plugins (with test plugins)"
scripts/build-plugins.sh --test-plugins
phase "building the Python content type and running its pytest suites (scripts/build-python-plugins.sh)"
scripts/build-python-plugins.sh
export WHARF_TEST_PYTHON_VENV="$ROOT/target/python-venv" WHARF_TEST_PYTHON_PLUGIN="$ROOT/target/plugins-extra/python.wasm"

# The object storage tests of wharf-store run a real S3 server, s3s-fs.
# Built once into target/tools, with its own target dir so the main build's
# artifacts stay untouched.
S3S_BIN="$ROOT/target/tools/bin/s3s-fs"
if [ -x "$S3S_BIN" ]; then
    phase "s3s-fs (S3 server for the tests): present, skipping its build"
else
    phase "building s3s-fs 0.14.1 (S3 server for the tests) into target/tools"
    CARGO_TARGET_DIR="$ROOT/target/s3s-build" cargo install s3s-fs --version 0.14.1 \
        --features binary --locked --root "$ROOT/target/tools"
fi
export WHARF_TEST_S3S_BIN="$S3S_BIN"

# One build for the binary and every test: `wharf`'s own integration test
# makes cargo build target/release/wharf with the workspace's unified
# features, so wasmtime is compiled once, not once per feature set.
phase "building wharf and the tests (cargo test --release --workspace --no-run)"
cargo test --release --workspace --no-run

phase "building Wharf's image (make dist, scripts/build-image.sh)"
make dist
scripts/build-image.sh target/dist/wharf target/image

# ----------------------------------------------------------------- run dir --
mkdir -p target/test-run
# Keep the logs of the last few runs only.
for old in $(compgen -G 'target/test-run/run-*' | LC_ALL=C sort | head -n -3); do
    # A run killed mid-way can leave a busy mount behind: never fail on it.
    rm -rf --one-file-system "$old" 2>/dev/null || echo "    (could not fully remove $old)"
done
RUN=$(mktemp -d "$ROOT/target/test-run/run-$(date +%Y%m%d-%H%M%S)-XXXX")
phase "run directory: $RUN"

# Unix socket paths must stay under 108 bytes; dockerd puts containerd's
# sockets below its exec-root. Fall back to /tmp for a deep checkout.
DOCKER_RUNTIME_DIR=$RUN
if [ ${#RUN} -gt 60 ]; then
    DOCKER_RUNTIME_DIR=$(mktemp -d /tmp/wharf-docker.XXXXXX)
    echo "    (run dir path is long: docker sockets in $DOCKER_RUNTIME_DIR)"
fi

# podman refuses a --runroot longer than 50 characters.
PODMAN_RUNROOT=$(mktemp -d /tmp/wharf-prun.XXXXXX)

DOCKERD_PID=""
SLAPD_DIR=""
RABBIT_DIR=""
MONGO_DIR=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$MONGO_DIR" ]; then
        phase "stopping secantusdb (pid $(cat "$MONGO_DIR/secantusd.pid" 2>/dev/null))"
        scripts/mongo.sh stop "$MONGO_DIR"
    fi
    if [ -n "$RABBIT_DIR" ]; then
        phase "stopping rabbitmq"
        scripts/rabbitmq.sh stop "$RABBIT_DIR"
    fi
    if [ -n "$SLAPD_DIR" ]; then
        phase "stopping slapd (pid $(cat "$SLAPD_DIR/slapd.pid" 2>/dev/null))"
        scripts/slapd.sh stop "$SLAPD_DIR"
    fi
    if [ -n "$DOCKERD_PID" ]; then
        phase "stopping dockerd (pid $DOCKERD_PID)"
        local containerd_pid=""
        containerd_pid=$(cat "$DOCKER_RUNTIME_DIR/docker-exec/containerd/containerd.pid" 2>/dev/null)
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 200); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "    dockerd still running after 20 s: SIGKILL"
            kill -KILL "$DOCKERD_PID" 2>/dev/null
        fi
        wait "$DOCKERD_PID" 2>/dev/null
        if [ -n "$containerd_pid" ] && kill -0 "$containerd_pid" 2>/dev/null; then
            echo "    stopping its containerd (pid $containerd_pid)"
            kill -TERM "$containerd_pid" 2>/dev/null
            for _ in $(seq 1 50); do
                kill -0 "$containerd_pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$containerd_pid" 2>/dev/null && kill -KILL "$containerd_pid" 2>/dev/null
        fi
    fi
    if [ "$DOCKER_RUNTIME_DIR" != "${RUN:-}" ] && [ -n "${DOCKER_RUNTIME_DIR:-}" ]; then
        rm -rf --one-file-system "$DOCKER_RUNTIME_DIR"
    fi
    rm -rf --one-file-system "$PODMAN_RUNROOT"
    # The vfs data-root holds a full copy of every image: drop it, keep the logs.
    [ -n "${RUN:-}" ] && rm -rf --one-file-system "$RUN/docker" "$RUN/p-root" 2>/dev/null
    if [ "$status" -eq 0 ]; then
        phase "PASSED (logs in ${RUN:-?})"
    else
        phase "FAILED with status $status (logs in ${RUN:-?})"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- dockerd --
phase "starting dockerd"
D=$DOCKER_RUNTIME_DIR
dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    --data-root "$RUN/docker" --exec-root "$D/docker-exec" --pidfile "$D/dockerd.pid" \
    -H "unix://$D/docker.sock" > "$RUN/dockerd.log" 2>&1 &
DOCKERD_PID=$!
export DOCKER_HOST="unix://$D/docker.sock"
# Debian's CLI matches the 20.10 engine; make plain `docker` mean it.
mkdir -p "$RUN/bin"
ln -sf /usr/bin/docker "$RUN/bin/docker"
export PATH="$RUN/bin:$PATH"

deadline=$((SECONDS + 60))
until /usr/bin/docker info >/dev/null 2>&1; do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        echo "dockerd exited; last lines of $RUN/dockerd.log:" >&2
        tail -n 30 "$RUN/dockerd.log" >&2
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "dockerd not ready after 60 s; last lines of $RUN/dockerd.log:" >&2
        tail -n 30 "$RUN/dockerd.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "    dockerd pid $DOCKERD_PID ready: $(/usr/bin/docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'), DOCKER_HOST=$DOCKER_HOST"

# A service script (`SCRIPT start DIR PORT` prints its URL when ready,
# `SCRIPT stop DIR` cleans up) on a random port, retried when the port is
# taken; prints the URL.
start_service() { # name script dir tries
    local name=$1 script=$2 dir=$3 tries=$4 url
    for _ in $(seq 1 "$tries"); do
        if url=$("$script" start "$dir" $((20000 + RANDOM % 20000))); then
            echo "$url"
            return 0
        fi
        "$script" stop "$dir"
    done
    echo "$name did not start; see $dir" >&2
    return 1
}

# ------------------------------------------------------------------- slapd --
phase "starting slapd (LDAP)"
SLAPD_DIR="$RUN/slapd"
WHARF_TEST_LDAP_URL=$(start_service slapd scripts/slapd.sh "$SLAPD_DIR" 5) || exit 1
export WHARF_TEST_LDAP_URL
echo "    slapd pid $(cat "$SLAPD_DIR/slapd.pid") ready at $WHARF_TEST_LDAP_URL"

# ---------------------------------------------------------------- rabbitmq --
phase "starting rabbitmq"
RABBIT_DIR="$RUN/rabbitmq"
WHARF_TEST_AMQP_URL=$(start_service rabbitmq scripts/rabbitmq.sh "$RABBIT_DIR" 3) || exit 1
export WHARF_TEST_AMQP_URL
echo "    rabbitmq ready at $WHARF_TEST_AMQP_URL"

# ----------------------------------------------------------------- mongodb --
phase "starting secantusdb (MongoDB wire protocol)"
MONGO_DIR="$RUN/mongo"
WHARF_TEST_MONGO_URL=$(start_service secantusdb scripts/mongo.sh "$MONGO_DIR" 5) || exit 1
export WHARF_TEST_MONGO_URL
echo "    secantusdb pid $(cat "$MONGO_DIR/secantusd.pid") ready at $WHARF_TEST_MONGO_URL"

# ------------------------------------------------------------- test images --
phase "building test images"
scripts/make-test-images.sh "$RUN/images"

# -------------------------------------------------------------------- tests --
export WHARF_TEST_IMAGES="$RUN/images"
export WHARF_BIN="$ROOT/target/release/wharf"
export WHARF_PLUGIN_DIR="$ROOT/target/plugins"
export WHARF_TEST_PLUGIN_DIR="$ROOT/target/test-plugins"
export WHARF_TEST_RUN_DIR="$RUN"
export WHARF_TEST_WHARF_IMAGE="$ROOT/target/image"
# Each parser fuzz target runs this long (docs/fuzzing.md); six targets, two
# test binaries in turn, two cores: about a minute in all.
export WHARF_FUZZ_SECONDS=${WHARF_FUZZ_SECONDS:-20}
# Tests that need a service fail, rather than skip, when it is missing.
export WHARF_TEST_REQUIRE_SERVICES=1
export PODMAN_ARGS="--root $RUN/p-root --runroot $PODMAN_RUNROOT --storage-driver vfs"

phase "cargo test --release --workspace $*"
for v in WHARF_FUZZ_SECONDS WHARF_BIN WHARF_TEST_S3S_BIN WHARF_PLUGIN_DIR WHARF_TEST_PLUGIN_DIR WHARF_TEST_IMAGES WHARF_TEST_RUN_DIR WHARF_TEST_WHARF_IMAGE PODMAN_ARGS DOCKER_HOST WHARF_TEST_LDAP_URL WHARF_TEST_AMQP_URL WHARF_TEST_MONGO_URL; do
    echo "    $v=${!v}"
done
cargo test --release --workspace "$@"
