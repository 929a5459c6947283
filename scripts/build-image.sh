#!/usr/bin/env bash
# An OCI image of Wharf, built offline: no base image is downloaded. The one
# layer holds the `wharf` binary (built-in plugins inside), the shared
# libraries it links (copied from this machine, found with ldd), the CA
# certificates, an /etc/passwd with the `wharf` user (uid 10001), /tmp, and
# the data directory /var/lib/wharf owned by that user. Assembled with umoci,
# like scripts/make-test-images.sh; see docs/packaging.md.
#
# Usage: scripts/build-image.sh BINARY OUTDIR   (`make image` runs it)
#
# OUTDIR/oci/        OCI layout, tagged with the version (`wharf --version`)
#                    and `latest`: push it with
#                    `skopeo copy oci:OUTDIR/oci:latest docker://HOST/wharf:TAG`
# OUTDIR/wharf.tar   the same image as a docker-archive named wharf:VERSION
#                    and wharf:latest, for `docker load` / `podman load`
#
# The image runs `wharf serve` as uid 10001 on 0.0.0.0:8080 with its data in
# the volume /var/lib/wharf; the first administrator's password comes from
# WHARF_ADMIN_PASSWORD (read once, on first start). Its health check is
# `wharf status --ready` (GET /readyz on WHARF_SERVER), which Docker runs
# itself and podman on `podman healthcheck run`.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 2
fi
BIN=$1
OUT=$2
for cmd in umoci skopeo jq ldd sha256sum tar; do
    command -v "$cmd" >/dev/null || { echo "build-image.sh: $cmd not found (apt-get install umoci skopeo jq)" >&2; exit 1; }
done
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || { echo "build-image.sh: $CA not found (apt-get install ca-certificates)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build-image.sh: $BIN is not an executable (run make build)" >&2; exit 1; }

VERSION=$("$BIN" --version | awk '{print $2}')
UID_GID=10001
EPOCH=1970-01-01T00:00:00Z
W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-image.XXXXXX")
trap 'rm -rf "$W"' EXIT
umask 022

echo "==> rootfs for wharf $VERSION from $BIN"
R=$W/rootfs
mkdir -p "$R/usr/bin" "$R/etc/ssl/certs" "$R/tmp" "$R/var/lib/wharf"
cp "$BIN" "$R/usr/bin/wharf"
chmod 0755 "$R/usr/bin/wharf"
# Every library the binary loads, at the path the loader looks for it.
while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
    chmod 0755 "$R$lib"
done < <(ldd "$BIN" | grep -o '/[^ ]*' | sort -u)
cp "$CA" "$R$CA"
chmod 0644 "$R$CA"
printf 'root:x:0:0:root:/root:/sbin/nologin\nwharf:x:%s:%s:Wharf:/var/lib/wharf:/sbin/nologin\n' \
    "$UID_GID" "$UID_GID" > "$R/etc/passwd"
printf 'root:x:0:\nwharf:x:%s:\n' "$UID_GID" > "$R/etc/group"
chmod 0644 "$R/etc/passwd" "$R/etc/group"
chmod 1777 "$R/tmp"
chmod 0750 "$R/var/lib/wharf"

# One layer, deterministic: sorted names, epoch times; everything owned by
# root but the data directory, appended with the wharf user as its owner.
echo "==> layer"
TAR_OPTS=(--format=gnu --sort=name --mtime=@0 --numeric-owner)
mapfile -t names < <(cd "$R" && LC_ALL=C ls -A)
tar -C "$R" --create --file "$W/layer.tar" "${TAR_OPTS[@]}" --owner=0 --group=0 \
    --exclude=var/lib/wharf -- "${names[@]}"
tar -C "$R" --append --file "$W/layer.tar" "${TAR_OPTS[@]}" --no-recursion \
    --owner="$UID_GID" --group="$UID_GID" -- var/lib/wharf

echo "==> OCI layout"
L=$W/oci
umoci init --layout "$L"
umoci new --image "$L:latest"
umoci raw add-layer --image "$L:latest" --history.created "$EPOCH" \
    --history.created_by "scripts/build-image.sh" "$W/layer.tar"
umoci config --image "$L:latest" --created "$EPOCH" --author "Wharf" \
    --architecture amd64 --os linux \
    --config.user "$UID_GID:$UID_GID" \
    --config.entrypoint /usr/bin/wharf --config.cmd serve \
    --config.workingdir /var/lib/wharf \
    --config.volume /var/lib/wharf \
    --config.exposedports 8080/tcp \
    --config.env PATH=/usr/bin \
    --config.env HOME=/var/lib/wharf \
    --config.env WHARF_LISTEN=0.0.0.0:8080 \
    --config.env WHARF_DATA_DIR=/var/lib/wharf \
    --config.env WHARF_SERVER=http://127.0.0.1:8080 \
    --config.label "org.opencontainers.image.title=wharf" \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.description=Wharf content platform (OCI registry and more)" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0" \
    --history.created "$EPOCH" --history.created_by "scripts/build-image.sh (config)"

# The health check: Docker's `Healthcheck` in the image config (the OCI
# image spec has no such field and umoci no flag for it). Rewrite the config
# blob, then the manifest naming it, then index.json naming the manifest.
echo "==> health check"
blob() { echo "$L/blobs/sha256/${1#sha256:}"; }
put_blob() { # file -> prints digest; the blob stored under its hash
    local d
    d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$(blob "$d")"
    echo "$d"
}
manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' "$L/index.json")
config=$(jq -r '.config.digest' "$(blob "$manifest")")
jq -c '.config.Healthcheck = {
        "Test": ["CMD", "/usr/bin/wharf", "status", "--ready"],
        "Interval": 30000000000, "Timeout": 10000000000,
        "StartPeriod": 30000000000, "Retries": 3 }' "$(blob "$config")" > "$W/config.json"
config=$(put_blob "$W/config.json")
jq -c --arg d "$config" --argjson s "$(stat -c %s "$W/config.json")" \
    '.config.digest = $d | .config.size = $s' "$(blob "$manifest")" > "$W/manifest.json"
manifest=$(put_blob "$W/manifest.json")
jq -c --arg d "$manifest" --argjson s "$(stat -c %s "$W/manifest.json")" \
    '.manifests |= map(.digest = $d | .size = $s)' "$L/index.json" > "$W/index.json"
cp "$W/index.json" "$L/index.json"
umoci tag --image "$L:latest" "$VERSION"
umoci gc --layout "$L"

echo "==> docker-archive"
rm -rf "$OUT/oci" "$OUT/wharf.tar"
mkdir -p "$OUT"
cp -r "$L" "$OUT/oci"
chmod -R a+rX "$OUT/oci"
skopeo --insecure-policy copy --quiet --additional-tag wharf:latest \
    "oci:$OUT/oci:latest" "docker-archive:$OUT/wharf.tar:wharf:$VERSION"
echo "wharf $VERSION: $OUT/oci (tags latest, $VERSION; manifest $manifest), $OUT/wharf.tar"
