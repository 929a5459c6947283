"""Build small, real wheels and sdists with the standard library only (for
the unit tests, and for the end-to-end tests, which run it as a script):

    python make_dists.py wheel OUTDIR NAME VERSION [--requires-python SPEC] [--metadata-name OTHER]
    python make_dists.py sdist OUTDIR NAME VERSION
    python make_dists.py tree OUTDIR  # a PEP 503 tree of a few projects (for http.server)
    python make_dists.py bench-tree OUTDIR FILES BIG_MIB  # project `bench` with FILES wheels,
                                      # project `big` with one wheel of BIG_MIB MiB (scripts/bench-python.sh)

Each prints the path it wrote. A wheel holds `{module}/__init__.py` with
`VERSION = "{version}"`, so an install can be checked by importing it.
"""

import base64
import hashlib
import io
import os
import re
import sys
import tarfile
import zipfile


def _module(name):
    return re.sub(r"[-.]+", "_", name).lower()


def _escaped(name):
    return re.sub(r"[-_.]+", "_", name)


def metadata(name, version, requires_python=None, summary="A test package"):
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n\n").encode()


def wheel_bytes(name, version, requires_python=None, metadata_name=None, dist_info_name=None, pad=0):
    mod = _module(name)
    dist_info = f"{_escaped(dist_info_name or name)}-{version}.dist-info"
    files = {
        f"{mod}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": metadata(metadata_name or name, version, requires_python),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: make_dists\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if pad:
        # Incompressible filler, to make big wheels.
        files[f"{mod}/data.bin"] = os.urandom(pad)
    record = []
    for path, data in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={h},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return buf.getvalue()


def wheel_name(name, version):
    return f"{_escaped(name)}-{version}-py3-none-any.whl"


def sdist_bytes(name, version, pkg_info_name=None, pad=0):
    top = f"{_escaped(name)}-{version}"
    mod = _module(name)
    files = {
        f"{top}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ).encode(),
        f"{top}/{mod}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{top}/PKG-INFO": metadata(pkg_info_name or name, version),
    }
    if pad:
        files[f"{top}/{mod}/data.bin"] = os.urandom(pad)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sdist_name(name, version):
    return f"{_escaped(name)}-{version}.tar.gz"


def tree(out, projects):
    """A PEP 503 static tree: OUT/simple/index.html, OUT/simple/<p>/index.html,
    files in OUT/files/. `projects`: {name: [(filename, bytes)]}."""
    os.makedirs(os.path.join(out, "simple"), exist_ok=True)
    os.makedirs(os.path.join(out, "files"), exist_ok=True)
    root = ["<!DOCTYPE html><html><body>"]
    for name, files in sorted(projects.items()):
        norm = re.sub(r"[-_.]+", "-", name).lower()
        root.append(f'<a href="{norm}/">{name}</a>')
        page = ["<!DOCTYPE html><html><body>"]
        for filename, data in files:
            with open(os.path.join(out, "files", filename), "wb") as f:
                f.write(data)
            sha = hashlib.sha256(data).hexdigest()
            page.append(f'<a href="../../files/{filename}#sha256={sha}">{filename}</a><br/>')
        page.append("</body></html>")
        os.makedirs(os.path.join(out, "simple", norm), exist_ok=True)
        with open(os.path.join(out, "simple", norm, "index.html"), "w") as f:
            f.write("\n".join(page))
    root.append("</body></html>")
    with open(os.path.join(out, "simple", "index.html"), "w") as f:
        f.write("\n".join(root))


def main(argv):
    kind, out = argv[0], argv[1]
    os.makedirs(out, exist_ok=True)
    if kind == "tree":
        tree(out, {
            "alpha": [(wheel_name("alpha", "1.0"), wheel_bytes("alpha", "1.0")),
                      (sdist_name("alpha", "1.0"), sdist_bytes("alpha", "1.0"))],
            "Beta.Pkg": [(wheel_name("Beta.Pkg", "2.0"), wheel_bytes("Beta.Pkg", "2.0"))],
            "gamma": [(wheel_name("gamma", "0.1"), wheel_bytes("gamma", "0.1"))],
        })
        print(os.path.join(out, "simple"))
        return
    if kind == "bench-tree":
        count, big = int(argv[2]), int(argv[3])
        tree(out, {
            "bench": [(wheel_name("bench", f"1.0.{i}"), wheel_bytes("bench", f"1.0.{i}")) for i in range(count)],
            "big": [(wheel_name("big", "1.0"), wheel_bytes("big", "1.0", pad=big << 20))],
        })
        print(os.path.join(out, "simple"))
        return
    name, version = argv[2], argv[3]
    opts = dict(zip(argv[4::2], argv[5::2]))
    if kind == "wheel":
        data = wheel_bytes(name, version, opts.get("--requires-python"), opts.get("--metadata-name"),
                           pad=int(opts.get("--pad", "0")))
        path = os.path.join(out, opts.get("--filename") or wheel_name(name, version))
    elif kind == "sdist":
        data = sdist_bytes(name, version, pad=int(opts.get("--pad", "0")))
        path = os.path.join(out, opts.get("--filename") or sdist_name(name, version))
    else:
        raise SystemExit(f"unknown kind {kind}")
    with open(path, "wb") as f:
        f.write(data)
    print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
