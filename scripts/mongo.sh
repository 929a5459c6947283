#!/usr/bin/env bash
# Start or stop a private MongoDB-wire-compatible server for the tests:
# secantusdb (from PyPI: Debian ships no mongod).
#   scripts/mongo.sh start DIR PORT   -> prints the MongoDB URL when ready
#   scripts/mongo.sh stop DIR
# DIR holds its data, log and PID; nothing outside DIR is touched except the
# virtualenv it installs secantusdb into once (WHARF_MONGO_VENV, default
# target/secantusdb-venv), so later runs start without the network.
set -euo pipefail
cmd=$1 M=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${WHARF_MONGO_VENV:-$ROOT/target/secantusdb-venv}
# The version the suite was written against: a newer beta may behave differently.
SECANTUSDB_VERSION=0.7.0b3

install_venv() {
    [ -x "$VENV/bin/secantusd-py" ] && return 0
    echo "    installing secantusdb $SECANTUSDB_VERSION into $VENV" >&2
    if ! python3 -m venv "$VENV" > /dev/null 2>&1; then
        # Debian ships venv's pip bootstrap separately.
        rm -rf "$VENV"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y python3-venv >&2 \
            || { apt-get -o DPkg::Lock::Timeout=600 update >&2 &&
                 DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y python3-venv >&2; }
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUSDB_VERSION" >&2
}

case $cmd in
start)
    PORT=$3
    install_venv
    mkdir -p "$M/data"
    setsid "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$PORT" --storage-path "$M/data" \
        > "$M/secantusd.log" 2>&1 < /dev/null &
    echo $! > "$M/secantusd.pid"
    # Ready when the port accepts connections; a taken port makes it exit.
    for _ in $(seq 1 300); do
        if ! kill -0 "$(cat "$M/secantusd.pid")" 2>/dev/null; then
            echo "secantusd exited; last lines of $M/secantusd.log:" >&2
            tail -n 20 "$M/secantusd.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            echo "mongodb://127.0.0.1:$PORT/"
            exit 0
        fi
        sleep 0.1
    done
    echo "secantusd not ready after 30 s; see $M/secantusd.log" >&2
    exit 1
    ;;
stop)
    if [ -s "$M/secantusd.pid" ]; then
        pid=$(cat "$M/secantusd.pid")
        kill -TERM "$pid" 2>/dev/null || true
        # It closes WiredTiger on SIGTERM, which took ~5 s on a loaded machine.
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$M/secantusd.pid"
    fi
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
