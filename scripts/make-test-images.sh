#!/usr/bin/env bash
# Build deterministic test images offline from busybox-static, with umoci and skopeo.
# Usage: scripts/make-test-images.sh [--bench] OUTDIR
#
# OUTDIR/oci/                 OCI layout (umoci) with tags `busybox`, `two`,
#                             `arch-amd64`, `arch-arm64`
# OUTDIR/busybox.tar          docker-archive (docker save format), test/busybox:latest
# OUTDIR/busybox-oci.tar      oci-archive of the same image
# OUTDIR/two-layer.tar        docker-archive, test/two:v1: busybox layer + /etc/second.txt
# OUTDIR/multi-arch-oci.tar   oci-archive whose index.json names (ref `latest`) one OCI
#                             image index of two platform manifests: linux/amd64 and
#                             linux/arm64, each the busybox layer + /etc/arch.txt
#                             ("amd64" / "arm64"; the binary stays amd64)
# OUTDIR/many-layers.tar      docker-archive, test/many:latest: 20 layers (busybox +
#                             19 layers of one 64 KiB file /data/layer-NN.txt each)
# OUTDIR/images.json          what was made: files, tags, sha256 of each file; for the
#                             multi-arch archive the index and per-platform digests
#
# With --bench, also (random data, so not byte-identical between runs; ~1 GB of disk):
# OUTDIR/bench-many.tar       docker-archive, bench/many:latest: busybox + 19 layers of
#                             8 MiB of random bytes each
# OUTDIR/bench-large.tar      docker-archive, bench/large:latest: busybox + one layer
#                             holding 128 MiB of random bytes
#
# busybox image rootfs: /bin/busybox, /bin/sh -> busybox, /bin/cat -> busybox,
# /etc/hello.txt ("hello from wharf"); config cmd /bin/sh, amd64/linux.
# Every timestamp is the epoch and owners are 0:0, so the same busybox binary
# gives byte-identical outputs on every run.
set -euo pipefail

BENCH=0
if [ "${1:-}" = "--bench" ]; then
    BENCH=1
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 [--bench] OUTDIR" >&2
    exit 2
fi
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

for cmd in umoci skopeo jq sha256sum; do
    command -v "$cmd" >/dev/null || { echo "make-test-images.sh: $cmd not found" >&2; exit 1; }
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || { echo "make-test-images.sh: $BUSYBOX not found (apt-get install busybox-static)" >&2; exit 1; }

EPOCH=1970-01-01T00:00:00Z
W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-images.XXXXXX")
trap 'rm -rf "$W"' EXIT
umask 022

# A deterministic, complete layer tar of a directory's contents (names without
# "./", sorted, epoch mtimes, owner 0:0). umoci 0.4.7's own `insert` writes
# layer tars without the end-of-archive blocks (umoci issue #436), so the layers
# are made with GNU tar and added verbatim with `umoci raw add-layer`.
layer_tar() { # dir out.tar
    local names
    mapfile -t names < <(cd "$1" && LC_ALL=C ls -A)
    tar -C "$1" --create --file "$2" --format=gnu --sort=name --mtime=@0 \
        --owner=0 --group=0 --numeric-owner -- "${names[@]}"
}

echo "==> rootfs from $BUSYBOX"
R=$W/rootfs
mkdir -p "$R/bin" "$R/etc"
cp "$BUSYBOX" "$R/bin/busybox"
chmod 0755 "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
ln -s busybox "$R/bin/cat"
printf 'hello from wharf\n' > "$R/etc/hello.txt"
chmod 0644 "$R/etc/hello.txt"
chmod 0755 "$R/bin" "$R/etc"
layer_tar "$R" "$W/busybox-layer.tar"

S=$W/second
mkdir -p "$S/etc"
printf 'second layer\n' > "$S/etc/second.txt"
chmod 0644 "$S/etc/second.txt"
chmod 0755 "$S/etc"
layer_tar "$S" "$W/second-layer.tar"

echo "==> OCI layout $OUT/oci (umoci)"
rm -rf "$OUT/oci"
umoci init --layout "$OUT/oci"
umoci new --image "$OUT/oci:busybox"
umoci raw add-layer --image "$OUT/oci:busybox" \
    --history.created "$EPOCH" --history.created_by "make-test-images: busybox rootfs" \
    "$W/busybox-layer.tar"
umoci config --image "$OUT/oci:busybox" \
    --config.cmd /bin/sh --architecture amd64 --os linux \
    --created "$EPOCH" --no-history
# Second image: the busybox layer plus one adding /etc/second.txt.
umoci raw add-layer --image "$OUT/oci:busybox" --tag two \
    --history.created "$EPOCH" --history.created_by "make-test-images: add /etc/second.txt" \
    "$W/second-layer.tar"
# Two platform variants: the busybox layer plus /etc/arch.txt, configs
# naming amd64 and arm64.
for arch in amd64 arm64; do
    A=$W/arch-$arch
    mkdir -p "$A/etc"
    printf '%s\n' "$arch" > "$A/etc/arch.txt"
    chmod 0644 "$A/etc/arch.txt"
    chmod 0755 "$A/etc"
    layer_tar "$A" "$W/arch-$arch-layer.tar"
    umoci raw add-layer --image "$OUT/oci:busybox" --tag "arch-$arch" \
        --history.created "$EPOCH" --history.created_by "make-test-images: add /etc/arch.txt" \
        "$W/arch-$arch-layer.tar"
    umoci config --image "$OUT/oci:arch-$arch" --architecture "$arch" --os linux \
        --created "$EPOCH" --no-history
done
umoci gc --layout "$OUT/oci"

echo "==> archives (skopeo)"
rm -f "$OUT/busybox.tar" "$OUT/busybox-oci.tar" "$OUT/two-layer.tar"
skopeo --insecure-policy copy --quiet "oci:$OUT/oci:busybox" "docker-archive:$OUT/busybox.tar:test/busybox:latest"
skopeo --insecure-policy copy --quiet "oci:$OUT/oci:busybox" "oci-archive:$OUT/busybox-oci.tar"
# skopeo stamps the oci-archive's tar headers with the current time: re-tar it.
mkdir "$W/oci-archive"
tar -C "$W/oci-archive" -xf "$OUT/busybox-oci.tar"
chmod -R u+rwX,go+rX,go-w "$W/oci-archive"
layer_tar "$W/oci-archive" "$OUT/busybox-oci.tar"
skopeo --insecure-policy copy --quiet "oci:$OUT/oci:two" "docker-archive:$OUT/two-layer.tar:test/two:v1"

echo "==> multi-arch oci-archive (hand-written index)"
M=$W/multi
mkdir -p "$M/blobs/sha256"
sha() { sha256sum "$1" | cut -d' ' -f1; }
manifest_of_tag() { # tag -> digest in $OUT/oci
    jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
        "$OUT/oci/index.json"
}
copy_blob() { # digest: from $OUT/oci into $M
    cp "$OUT/oci/blobs/sha256/${1#sha256:}" "$M/blobs/sha256/${1#sha256:}"
}
children=()
for arch in amd64 arm64; do
    m=$(manifest_of_tag "arch-$arch")
    copy_blob "$m"
    mfile="$OUT/oci/blobs/sha256/${m#sha256:}"
    for b in $(jq -r '.config.digest, .layers[].digest' "$mfile"); do copy_blob "$b"; done
    children+=("$(jq -n --arg d "$m" --argjson size "$(stat -c %s "$mfile")" --arg arch "$arch" \
        '{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $size,
          platform: {architecture: $arch, os: "linux"}}')")
done
printf '%s\n' "${children[@]}" | jq -cs \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
    | tr -d '\n' > "$W/multi-index.json"
INDEX_DIGEST=sha256:$(sha "$W/multi-index.json")
cp "$W/multi-index.json" "$M/blobs/sha256/${INDEX_DIGEST#sha256:}"
jq -cn --arg d "$INDEX_DIGEST" --argjson size "$(stat -c %s "$W/multi-index.json")" \
    '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.index.v1+json",
      digest: $d, size: $size, annotations: {"org.opencontainers.image.ref.name": "latest"}}]}' \
    > "$M/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$M/oci-layout"
chmod -R u+rwX,go+rX,go-w "$M"
rm -f "$OUT/multi-arch-oci.tar"
layer_tar "$M" "$OUT/multi-arch-oci.tar"

# An image of many layers, from its own layout so $OUT/oci stays small.
# Contents are repeated text (deterministic); the bench variant uses random bytes.
many_layers() { # out.tar reference layers bytes-per-layer source(text|random)
    local out=$1 ref=$2 n=$3 bytes=$4 source=$5 L=$W/many-$RANDOM i
    umoci init --layout "$L"
    umoci new --image "$L:img"
    umoci raw add-layer --image "$L:img" --history.created "$EPOCH" \
        --history.created_by "make-test-images: busybox rootfs" "$W/busybox-layer.tar"
    for i in $(seq -w 1 $((n - 1))); do
        rm -rf "$W/many-rootfs"
        mkdir -p "$W/many-rootfs/data"
        if [ "$source" = random ]; then
            head -c "$bytes" /dev/urandom > "$W/many-rootfs/data/layer-$i.bin"
        else
            { yes "layer $i of $ref" || true; } | head -c "$bytes" > "$W/many-rootfs/data/layer-$i.txt"
        fi
        chmod -R u+rwX,go+rX,go-w "$W/many-rootfs"
        layer_tar "$W/many-rootfs" "$W/many-layer.tar"
        umoci raw add-layer --image "$L:img" --history.created "$EPOCH" \
            --history.created_by "make-test-images: layer $i" "$W/many-layer.tar"
    done
    umoci config --image "$L:img" --config.cmd /bin/sh --architecture amd64 --os linux \
        --created "$EPOCH" --no-history
    rm -f "$out"
    skopeo --insecure-policy copy --quiet "oci:$L:img" "docker-archive:$out:$ref"
    rm -rf "$L" "$W/many-rootfs" "$W/many-layer.tar"
}
echo "==> many-layers.tar (20 layers)"
many_layers "$OUT/many-layers.tar" test/many:latest 20 65536 text
if [ "$BENCH" = 1 ]; then
    echo "==> bench images (random data)"
    many_layers "$OUT/bench-many.tar" bench/many:latest 20 $((8 << 20)) random
    many_layers "$OUT/bench-large.tar" bench/large:latest 2 $((128 << 20)) random
fi

# Describe what was made.
describe() { # file transport tag
    local f=$1 transport=$2 tag=$3 raw
    raw=$(skopeo inspect --raw "$transport:$OUT/$f")
    jq -n --arg file "$f" --arg transport "$transport" --arg tag "$tag" \
        --arg sha256 "$(sha256sum "$OUT/$f" | cut -d' ' -f1)" \
        --argjson size "$(stat -c %s "$OUT/$f")" \
        --argjson layers "$(jq '.layers | length' <<<"$raw")" \
        --arg manifest_digest "sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)" \
        --arg config_digest "$(jq -r .config.digest <<<"$raw")" \
        '{file: $file, transport: $transport, tag: $tag, size: $size, sha256: $sha256,
          layers: $layers, manifest_digest: $manifest_digest, config_digest: $config_digest}'
}
{
    describe busybox.tar docker-archive test/busybox:latest
    describe busybox-oci.tar oci-archive ""
    describe two-layer.tar docker-archive test/two:v1
    describe many-layers.tar docker-archive test/many:latest
    if [ "$BENCH" = 1 ]; then
        describe bench-many.tar docker-archive bench/many:latest
        describe bench-large.tar docker-archive bench/large:latest
    fi
} | jq -s --arg index "$INDEX_DIGEST" \
        --arg amd64 "$(manifest_of_tag arch-amd64)" --arg arm64 "$(manifest_of_tag arch-arm64)" \
        --arg sha256 "$(sha "$OUT/multi-arch-oci.tar")" \
        --argjson size "$(stat -c %s "$OUT/multi-arch-oci.tar")" \
    '{images: ., multi_arch: {file: "multi-arch-oci.tar", transport: "oci-archive", tag: "latest",
      size: $size, sha256: $sha256, index_digest: $index, platforms: {amd64: $amd64, arm64: $arm64}}}' \
    > "$OUT/images.json"

echo "==> made in $OUT:"
jq -r '.images[] | "    \(.file)  \(.transport)  \(if .tag == "" then "-" else .tag end)  \(.layers) layer(s)  \(.size) bytes  sha256:\(.sha256)"' "$OUT/images.json"
jq -r '.multi_arch | "    \(.file)  \(.transport)  \(.tag)  index \(.index_digest): amd64 \(.platforms.amd64), arm64 \(.platforms.arm64)"' "$OUT/images.json"
echo "    oci/  OCI layout, tags: $(umoci ls --layout "$OUT/oci" | tr '\n' ' ')"
