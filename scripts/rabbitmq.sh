#!/usr/bin/env bash
# Start or stop a private RabbitMQ (Debian's rabbitmq-server) for the tests.
#   scripts/rabbitmq.sh start DIR PORT   -> prints the AMQP URL when ready
#   scripts/rabbitmq.sh stop DIR
# DIR holds its data, logs, PID and any erl_crash.dump; nothing outside DIR
# is touched except the epmd it starts (stopped by PID on stop).
set -euo pipefail
cmd=$1 R=$2
# A node name of its own (from the port), so that several test runs, or a
# developer's own RabbitMQ, never clash on this machine.
if [ "$cmd" = start ]; then
    mkdir -p "$R"
    echo "wharf$3@localhost" > "$R/nodename"
fi
NODE=$(cat "$R/nodename" 2>/dev/null || echo rabbit@localhost)
export HOME=$R/home RABBITMQ_NODENAME=$NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$R/mnesia RABBITMQ_LOG_BASE=$R/log \
    RABBITMQ_PID_FILE=$R/rabbit.pid RABBITMQ_ENABLED_PLUGINS_FILE=$R/enabled_plugins \
    RABBITMQ_CONFIG_FILE=$R/rabbitmq
# An Erlang VM that crashes (the node, or rabbitmqctl) writes erl_crash.dump
# into its working directory, i.e. the repository: keep it in DIR instead.
export ERL_CRASH_DUMP=$R/erl_crash.dump
BIN=/usr/lib/rabbitmq/bin
case $cmd in
start)
    PORT=$3
    mkdir -p "$R/home" "$R/mnesia" "$R/log"
    : > "$R/enabled_plugins"
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$PORT" > "$R/rabbitmq.conf"
    # The distribution port must not clash with another node on this machine.
    export RABBITMQ_DIST_PORT=$((PORT + 20000))
    "$BIN/rabbitmq-server" -detached > "$R/start.log" 2>&1
    # await_startup fails at once while the node is not yet registered: retry.
    for _ in $(seq 1 90); do
        if "$BIN/rabbitmqctl" await_startup > "$R/await.log" 2>&1; then break; fi
        sleep 1
    done
    if ! "$BIN/rabbitmqctl" await_startup > "$R/await.log" 2>&1; then
        echo "rabbitmq did not start; see $R/log and $R/await.log" >&2
        exit 1
    fi
    pgrep -f "epmd.*-daemon" | head -1 > "$R/epmd.pid" || true
    echo "amqp://guest:guest@127.0.0.1:$PORT/%2f"
    ;;
stop)
    "$BIN/rabbitmqctl" stop > /dev/null 2>&1 || { [ -f "$R/rabbit.pid" ] && kill "$(cat "$R/rabbit.pid")" 2>/dev/null; } || true
    if [ -s "$R/epmd.pid" ]; then kill "$(cat "$R/epmd.pid")" 2>/dev/null || true; fi
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
