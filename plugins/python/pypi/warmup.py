"""Exercise every parser once while componentize-py pre-initializes the
component.

A component holds the modules imported during that pre-initialization
snapshot; the standard library imports some of its modules lazily (codecs
for `zipfile` names, `email.message` inside the header parser, ...), and
those would be missing at run time ("No module named 'email.message'").
Running each code path once on tiny in-memory archives at import time puts
everything they need into the snapshot.
"""

import io
import tarfile
import zipfile


class _Bytes:
    """A `source` over bytes (len, read, store_range), for the warm-up only."""

    def __init__(self, data):
        self.data = data

    def len(self):
        return len(self.data)

    def read(self, offset, length):
        return self.data[offset : offset + length]

    def store_range(self, offset, length, expect):  # pragma: no cover - never called
        raise RuntimeError("no storage during the warm-up")


def run():
    from wharf_sdk.reader import SourceReader

    from . import dists, multipart, pages, sync

    meta = b"Metadata-Version: 2.1\nName: warm\nVersion: 1.0\nRequires-Python: >=3\n\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("warm-1.0.dist-info/METADATA", meta)
    dists.read(SourceReader(_Bytes(buf.getvalue())), "warm-1.0-py3-none-any.whl")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("warm-1.0/PKG-INFO")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
    dists.read(SourceReader(_Bytes(buf.getvalue())), "warm-1.0.tar.gz")
    body = (b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n'
            b'--b\r\nContent-Disposition: form-data; name="content"; filename="f"\r\n\r\nd\r\n--b--\r\n')
    multipart.parse(SourceReader(_Bytes(body)))
    parser = sync._Anchors()
    parser.feed('<a href="x/#sha256=00" data-requires-python="&gt;=3">x&amp;</a>')
    sync._selected("warm", ["w*"], ["x"])
    pages.negotiate("text/html;q=0.5, */*", "format=text%2Fhtml")
    pages.project_html("warm", [{"filename": "warm-1.0.tar.gz", "digest": "sha256:" + "0" * 64,
                                 "requires_python": ">=3", "size": 1, "version": "1.0"}])
