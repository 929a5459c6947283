"""The host imports a plugin's logic uses, as one object.

Plugin logic takes a `host` argument and calls its methods; `WasmHost` is
the real one (the WIT imports, inside the component), and
`wharf_sdk.testing.FakeHost` implements the same methods in memory for
pytest. Failed imports raise `PluginError` instead of the bindings' `Err`.

| method | WIT |
| --- | --- |
| `store_bytes(data, expect=None) -> digest` | `blobs.store-bytes` |
| `stat(digest) -> int or None` | `blobs.stat` |
| `open(digest) -> source` | `blobs.open` (a `source`; wrap it in `SourceReader`) |
| `read_blob(digest, cap) -> bytes` | `blobs.open` + bounded reads |
| `add_unit(unit)`, `remove_unit(type, key)`, `get_unit(type, key)`, `list_units(type, after, limit)` | `units.*` |
| `changes(since, type, after, limit) -> [Changed]` (in a publish) | `units.changes` (0.7.1) |
| `units_naming(digest, type, after, limit) -> [Unit]` (not in a publish) | `units.naming` (0.7.2) |
| `previous() -> PublishedBefore or None` (in a publish) | `publications.previous` (0.7.1) |
| `get(url, headers=(), cap=...) -> HttpResponse` | `fetch.fetch` + bounded reads |
| `fetch_blobs(downloads) -> [digest or PluginError]` | `fetch.fetch-blobs` |
| `lookup(name)`, `publication_names(after, limit)` | `publications.*` |
| `session_length(id)`, `commit_session(id, expect)`, `abort_session(id)`, `receive(digest)` | `sessions.*` |
| `repository(id)`, `find_repositories(key, value)` | `repositories.*` |
| `progress(items_done, items_total, bytes_done, bytes_total, message)`, `log(level, message)` | `log.*` |
"""

from dataclasses import dataclass, field

from . import _wit
from .errors import PluginError
from .reader import SourceReader, read_capped

#: Largest body `get` reads by default (the host's own cap on fetched bodies).
MAX_FETCH = 64 << 20

Unit = _wit.units.Unit
Changed = _wit.units.Changed
PublishedBefore = _wit.publications.PublishedBefore
Header = _wit.types.Header
BlobDownload = _wit.fetch.BlobDownload
Level = _wit.log.Level


@dataclass
class HttpResponse:
    """An HTTP answer with its (capped) body in memory."""

    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""

    def header(self, name):
        return header(self.headers, name)


def header(headers, name):
    """The first header called `name` (case-insensitive), or None."""
    name = name.lower()
    for h in headers:
        if h.name.lower() == name:
            return h.value
    return None


def _call(f, *args):
    try:
        return f(*args)
    except _wit.Err as e:
        raise PluginError.from_wit(e) from None


class WasmHost:
    """The real host: the WIT imports of the `content-plugin` world."""

    # blobs
    def max_read(self):
        return _wit.blobs.max_read()

    def store_bytes(self, data, expect=None):
        return _call(_wit.blobs.store_bytes, bytes(data), expect)

    def stat(self, digest):
        return _wit.blobs.stat(digest)

    def open(self, digest):
        return _call(_wit.blobs.open, digest)

    def read_blob(self, digest, cap):
        source = self.open(digest)
        try:
            return read_capped(SourceReader(source), cap, f"blob {digest}")
        finally:
            _release(source)

    # units
    def add_unit(self, unit):
        _call(_wit.units.add, unit)

    def remove_unit(self, unit_type, key):
        return _call(_wit.units.remove, unit_type, key)

    def list_units(self, unit_type, after, limit):
        return _call(_wit.units.list, unit_type, after, limit)

    def get_unit(self, unit_type, key):
        return _call(_wit.units.get, unit_type, key)

    def changes(self, since, unit_type, after, limit):
        return _call(_wit.units.changes, since, unit_type, after, limit)

    def units_naming(self, digest, unit_type, after, limit):
        """The units of `unit_type` naming blob `digest` (0.7.2)."""
        return _call(_wit.units.naming, digest, unit_type, after, limit)

    # fetch
    def fetch(self, url, headers=(), method="GET"):
        """The raw answer: status, headers and the body as a host `source`."""
        req = _wit.fetch.Request(method=method, url=url, headers=list(headers))
        return _call(_wit.fetch.fetch, req)

    def get(self, url, headers=(), cap=MAX_FETCH):
        response = self.fetch(url, headers)
        body = response.body
        try:
            data = read_capped(SourceReader(body), cap, f"the answer of {url}")
        except PluginError as e:
            if e.code == "too-large":
                raise
            raise PluginError("fetch-failed", e.message) from None
        finally:
            _release(body)
        return HttpResponse(response.status, list(response.headers), data)

    def fetch_blobs(self, downloads):
        out = []
        for r in _wit.fetch.fetch_blobs(list(downloads)):
            if isinstance(r, _wit.Ok):
                out.append(r.value)
            else:
                out.append(PluginError.from_wit(r))
        return out

    # publications
    def lookup(self, name):
        return _wit.publications.lookup(name)

    def publication_names(self, after, limit):
        return _wit.publications.names(after, limit)

    def previous(self):
        return _wit.publications.previous()

    # sessions
    def session_length(self, id):
        return _wit.sessions.length(id)

    def commit_session(self, id, expect=None):
        return _call(_wit.sessions.commit, id, expect)

    def abort_session(self, id):
        return _wit.sessions.abort(id)

    def receive(self, digest):
        return _wit.sessions.receive(digest)

    # repositories
    def repository(self, id):
        return _wit.repositories.get(id)

    def find_repositories(self, key, value):
        return _wit.repositories.find(key, value)

    # log
    def progress(self, items_done, items_total, bytes_done, bytes_total, message):
        _wit.log.progress(items_done, items_total, bytes_done, bytes_total, message)

    def log(self, level, message):
        if isinstance(level, str):
            level = getattr(Level, level.upper())
        _wit.log.log(level, message)


def _release(source):
    """Drop a resource handle now rather than at the end of the call."""
    exit_ = getattr(source, "__exit__", None)
    if exit_ is not None:
        try:
            exit_(None, None, None)
        except Exception:
            pass


def release(source):
    """Release a host `source` handle (a no-op for fakes)."""
    _release(source)
