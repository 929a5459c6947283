"""Access to the WIT bindings (`wit_world`) that componentize-py generates.

Inside a component the bindings are always there. Natively (pytest), they
are generated once from the repository's `wit/` with
`componentize-py -d wit -w content-plugin bindings DIR` and put on
`sys.path`: the records (`Info`, `Plan_Blob`, `Unit`, ...) are plain
dataclasses that work anywhere; only the import *functions* need the host,
and `wharf_sdk.testing.FakeHost` stands in for those.

Where natively: `$WHARF_PY_BINDINGS` if set, else `target/python-bindings`
of the checkout this SDK lives in; the WIT comes from `$WHARF_WIT_DIR`, else
the checkout's `wit/`.
"""

import hashlib
import os
import shutil
import subprocess
import sys


def _checkout_root():
    here = os.path.dirname(os.path.abspath(__file__))
    # sdk/python/wharf_sdk -> the checkout
    return os.path.abspath(os.path.join(here, "..", "..", ".."))


def _generate(wit_dir, out_dir):
    tool = shutil.which("componentize-py") or os.path.join(
        os.path.dirname(sys.executable), "componentize-py"
    )
    if not os.path.exists(tool):
        raise ImportError(
            "the WIT bindings (wit_world) are missing and componentize-py is not installed: "
            "pip install componentize-py==0.25.1, or run scripts/build-python-plugins.sh"
        )
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [tool, "-d", wit_dir, "-w", "content-plugin", "bindings", tmp],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(tmp, ".wit-stamp"), "w") as f:
        f.write(_wit_stamp(wit_dir))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def _wit_stamp(wit_dir):
    parts = []
    for name in sorted(os.listdir(wit_dir)):
        if name.endswith(".wit"):
            with open(os.path.join(wit_dir, name), "rb") as f:
                parts.append(name + ":" + hashlib.sha256(f.read()).hexdigest())
    return "\n".join(parts)


def _load_native():
    root = _checkout_root()
    wit_dir = os.environ.get("WHARF_WIT_DIR") or os.path.join(root, "wit")
    out_dir = os.environ.get("WHARF_PY_BINDINGS") or os.path.join(
        root, "target", "python-bindings"
    )
    stamp = os.path.join(out_dir, ".wit-stamp")
    fresh = False
    if os.path.exists(stamp) and os.path.isdir(wit_dir):
        with open(stamp) as f:
            fresh = f.read() == _wit_stamp(wit_dir)
    if not fresh:
        if not os.path.isdir(wit_dir):
            raise ImportError(
                f"no WIT bindings and no WIT directory at {wit_dir}: set WHARF_WIT_DIR"
            )
        _generate(wit_dir, out_dir)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)


try:  # In a component (and when already on the path).
    import wit_world  # noqa: F401
except ImportError:
    _load_native()
    import wit_world  # noqa: F401

from componentize_py_types import Err, Ok  # noqa: E402,F401
from wit_world import exports  # noqa: E402,F401
from wit_world.exports import plugin  # noqa: E402,F401
from wit_world.imports import (  # noqa: E402,F401
    blobs,
    fetch,
    log,
    publications,
    repositories,
    sessions,
    types,
    units,
)
