#!/usr/bin/env bash
# Build deterministic test images offline from busybox-static, with umoci and skopeo.
# Usage: scripts/make-test-images.sh OUTDIR
#
# OUTDIR/oci/                 OCI layout (umoci) with tags `busybox` and `two`
# OUTDIR/busybox.tar          docker-archive (docker save format), test/busybox:latest
# OUTDIR/busybox-oci.tar      oci-archive of the same image
# OUTDIR/two-layer.tar        docker-archive, test/two:v1: busybox layer + /etc/second.txt
# OUTDIR/images.json          what was made: files, tags, sha256 of each file
#
# busybox image rootfs: /bin/busybox, /bin/sh -> busybox, /bin/cat -> busybox,
# /etc/hello.txt ("hello from wharf"); config cmd /bin/sh, amd64/linux.
# Every timestamp is the epoch and owners are 0:0, so the same busybox binary
# gives byte-identical outputs on every run.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
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
} | jq -s '{images: .}' > "$OUT/images.json"

echo "==> made in $OUT:"
jq -r '.images[] | "    \(.file)  \(.transport)  \(if .tag == "" then "-" else .tag end)  \(.layers) layer(s)  \(.size) bytes  sha256:\(.sha256)"' "$OUT/images.json"
echo "    oci/  OCI layout, tags: $(umoci ls --layout "$OUT/oci" | tr '\n' ' ')"
