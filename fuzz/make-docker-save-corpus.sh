#!/usr/bin/env bash
# Writes the seed archives of the docker-save fuzz target (fuzz/corpus/docker-save/)
# with GNU tar: a legacy `docker save`, a Docker 25+ save (OCI layout and
# manifest.json, pax headers), a skopeo-style OCI layout (ustar), and long
# names with a hard link. Run from anywhere; it works in a temporary directory.
set -euo pipefail
out="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/corpus/docker-save"
mkdir -p "$out"
cd "$(mktemp -d)"
T="tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -b 1"
sha() { sha256sum "$1" | cut -d' ' -f1; }
# layer
rm -rf rootfs && mkdir -p rootfs/etc && printf 'hello from wharf\n' > rootfs/etc/hello.txt && ln -s hello.txt rootfs/etc/greeting
$T --format=gnu -cf layer.tar -C rootfs etc
L=$(sha layer.tar); LS=$(stat -c %s layer.tar)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $L > config.json
C=$(sha config.json); CS=$(stat -c %s config.json)
# legacy docker save (docker < 25): <id>/layer.tar, a second image's layer as a symlink
rm -rf legacy && mkdir -p legacy/$L legacy/aaaa
cp layer.tar legacy/$L/layer.tar; printf '1.0' > legacy/$L/VERSION; printf '{"id":"%s"}' $L > legacy/$L/json
ln -s ../$L/layer.tar legacy/aaaa/layer.tar
cp config.json legacy/$C.json
printf '[{"Config":"%s.json","RepoTags":["hello:1","localhost:5000/hello:latest"],"Layers":["%s/layer.tar"]},{"Config":"%s.json","RepoTags":["hello:linked"],"Layers":["aaaa/layer.tar"]}]' $C $L $C > legacy/manifest.json
printf '{"hello":{"1":"%s"}}' $L > legacy/repositories
$T --format=gnu -cf $out/legacy-docker-save.tar -C legacy .
# OCI layout as docker 25+ writes it: index.json and manifest.json
rm -rf oci && mkdir -p oci/blobs/sha256
cp layer.tar oci/blobs/sha256/$L; cp config.json oci/blobs/sha256/$C
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' $C $CS $L $LS > m.json
M=$(sha m.json); MS=$(stat -c %s m.json); cp m.json oci/blobs/sha256/$M
printf '{"imageLayoutVersion":"1.0.0"}' > oci/oci-layout
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/hello:1","org.opencontainers.image.ref.name":"1"}}]}' $M $MS > oci/index.json
printf '[{"Config":"blobs/sha256/%s","RepoTags":["hello:1"],"Layers":["blobs/sha256/%s"]}]' $C $L > oci/manifest.json
$T --format=posix --pax-option=delete=atime,delete=ctime -cf $out/oci-docker25-save.tar -C oci .
# skopeo-style: OCI layout only, ustar, no manifest.json
rm oci/manifest.json
$T --format=ustar -cf $out/oci-layout-ustar.tar -C oci oci-layout index.json blobs
# long member names (GNU long-name records) and a hard link
D=$(printf "d%.0s" $(seq 1 120)); rm -rf long && mkdir -p long/$D
cp layer.tar long/$D/layer.tar; ln long/$D/layer.tar long/hard.tar
printf '[{"Config":"c.json","RepoTags":["x:1"],"Layers":["hard.tar"]}]' > long/manifest.json
cp config.json long/c.json
$T --format=gnu -cf $out/long-names-hardlink.tar -C long .
ls -l "$out"
