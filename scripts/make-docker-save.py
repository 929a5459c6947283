#!/usr/bin/env python3
"""A `docker save` archive of random bytes for the benchmarks: the legacy
layout, 8 layers, each a tar of one random file, the whole about SIZE_MIB.

Usage: scripts/make-docker-save.py OUT.tar SIZE_MIB
"""
import hashlib, io, json, os, sys, tarfile
out, size_mib = sys.argv[1], int(sys.argv[2])
layers, per = 8, (size_mib << 20) // 8
diff_ids, names = [], []
with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as save:
    for i in range(layers):
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
            info = tarfile.TarInfo(f"data/layer-{i}.bin"); info.size = per - 4096
            t.addfile(info, io.BytesIO(os.urandom(info.size)))
        data = layer.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        info = tarfile.TarInfo(f"layer{i}/layer.tar"); info.size = len(data)
        save.addfile(info, io.BytesIO(data)); names.append(info.name)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    for name, data in [(cname, config), ("manifest.json", json.dumps(
            [{"Config": cname, "RepoTags": ["bench/big:latest"], "Layers": names}]).encode())]:
        info = tarfile.TarInfo(name); info.size = len(data); save.addfile(info, io.BytesIO(data))
