#!/usr/bin/env bash
# Build the Wharf plugins (wasm32-wasip2 components) and copy them into place:
#   target/plugins/{docker,file}.wasm
#   target/test-plugins/{looping,hungry,trapping,incompatible,snoop}.wasm  (with --test-plugins)
#   target/test-plugins/file-next.wasm: the file plugin again as version <v>-next,
#     to test upgrades (with --test-plugins)
# Usage: scripts/build-plugins.sh [--test-plugins]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

TEST_PLUGINS=0
for arg in "$@"; do
    case "$arg" in
        --test-plugins) TEST_PLUGINS=1 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "build-plugins.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

TARGET=wasm32-wasip2
PLUGINS=(docker file)
TEST_NAMES=(looping hungry trapping incompatible snoop)

echo "==> rustup target add $TARGET"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

PKGS=()
for p in "${PLUGINS[@]}"; do PKGS+=(-p "wharf-plugin-$p"); done
if [ "$TEST_PLUGINS" = 1 ]; then
    # The incompatible plugin's WIT is the real one with only the package version
    # changed; keep it in step with wit/plugin.wit.
    INCOMPAT_WIT=tests/plugins/incompatible/wit/plugin.wit
    want=$(sed -E 's/^package wharf:plugin@[^;]+;/package wharf:plugin@1.0.0;/' wit/plugin.wit)
    if [ "$want" != "$(cat "$INCOMPAT_WIT" 2>/dev/null)" ]; then
        echo "==> regenerating $INCOMPAT_WIT from wit/plugin.wit (version 1.0.0)"
        printf '%s\n' "$want" > "$INCOMPAT_WIT"
    fi
    for t in "${TEST_NAMES[@]}"; do PKGS+=(-p "wharf-test-plugin-$t"); done
fi

echo "==> cargo build --release --target $TARGET ${PKGS[*]}"
# Plugins ship without DWARF (the name section stays, so traps still name
# functions): smaller files, faster compiles.
CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --target "$TARGET" "${PKGS[@]}"

OUT="$ROOT/target/$TARGET/release"
TARGET_DIR="$ROOT/target"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    OUT="$CARGO_TARGET_DIR/$TARGET/release"
fi

mkdir -p "$TARGET_DIR/plugins"
for p in "${PLUGINS[@]}"; do
    cp -f "$OUT/wharf_plugin_$p.wasm" "$TARGET_DIR/plugins/$p.wasm"
    echo "    target/plugins/$p.wasm ($(stat -c %s "$TARGET_DIR/plugins/$p.wasm") bytes)"
done
if [ "$TEST_PLUGINS" = 1 ]; then
    mkdir -p "$TARGET_DIR/test-plugins"
    for t in "${TEST_NAMES[@]}"; do
        cp -f "$OUT/wharf_test_plugin_$t.wasm" "$TARGET_DIR/test-plugins/$t.wasm"
        echo "    target/test-plugins/$t.wasm ($(stat -c %s "$TARGET_DIR/test-plugins/$t.wasm") bytes)"
    done
    # A second build of the file plugin that reports another version. Its own
    # target directory keeps the two builds from invalidating each other.
    echo "==> file plugin, next version (target/wasm-next)"
    WHARF_PLUGIN_VERSION_SUFFIX=-next CARGO_TARGET_DIR="$ROOT/target/wasm-next" \
        CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
        cargo build --release --target "$TARGET" -p wharf-plugin-file
    cp -f "$ROOT/target/wasm-next/$TARGET/release/wharf_plugin_file.wasm" "$TARGET_DIR/test-plugins/file-next.wasm"
fi
echo "==> plugins built"
