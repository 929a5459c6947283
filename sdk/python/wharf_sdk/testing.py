"""`FakeHost`: the host in memory, for a plugin's unit tests under pytest.

It implements the methods of `wharf_sdk.host.WasmHost` with dicts: blobs
by digest, the units of one repository, publications by name, upload
sessions, and HTTP from a function. It records what the logic did
(`gets`, `downloads`, `progress`, `logs`) and refuses what the real host
refuses (a unit naming a blob that is not stored, a key over 1024 bytes,
metadata that is not JSON, a read over `max-read`, a download of another
digest or size than it said, a store with the wrong `expect`).

    from wharf_sdk.testing import FakeHost, sha256

    host = FakeHost()
    src = host.source(b"hello")          # an upload, as `upload` receives it
    digest = src.store_range(0, 5, None)
    assert host.blobs[digest] == b"hello" and digest == sha256(b"hello")
"""

import hashlib
import json

from . import _wit
from .errors import PluginError
from .host import HttpResponse
from .reader import SourceReader, read_capped

#: What the host answers for `max-read`.
MAX_READ = 1 << 20


def sha256(data):
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(ch):
    """A well-formed made-up digest: `sha256:` and 64 times `ch`."""
    return "sha256:" + ch * 64


class FakeSource:
    """Bytes the fake host holds, with the WIT `source` methods."""

    def __init__(self, host, data):
        self.host = host
        self.data = bytes(data)
        self.reads = 0

    def len(self):
        return len(self.data)

    def read(self, offset, length):
        self.reads += 1
        return self.data[offset : offset + min(length, MAX_READ)]

    def store_range(self, offset, length, expect):
        if offset + length > len(self.data):
            raise PluginError.invalid(f"range [{offset}, +{length}) is past the end ({len(self.data)} bytes)")
        return self.host.store_bytes(self.data[offset : offset + length], expect)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class FakeHost:
    def __init__(self, http=None):
        #: digest -> bytes
        self.blobs = {}
        #: (unit_type, key) -> Unit, the current repository's associations
        self.units = {}
        #: name -> Publication
        self.publications = {}
        #: what `previous()` answers (a publish replacing a publication)
        self.previous_publication = None
        #: the repository's versions: its associations as each `snapshot()` saw them
        self.versions = []
        #: session id -> bytearray
        self.sessions = {}
        #: id -> Repository
        self.repositories = {}
        #: `http(url, headers) -> (status, headers, body)` or `(status, body)`
        self.http = http
        self.gets = []
        self.downloads = []
        self.progress_reports = []
        self.logs = []
        self.stored = []

    # ---- test set-up helpers
    def source(self, data):
        """A `source` over `data` (an upload, a fetched body)."""
        return FakeSource(self, data)

    def reader(self, data):
        return SourceReader(self.source(data))

    def serving(self, pages):
        """HTTP answering `pages` (`{url: bytes or (status, body)}`), 404 otherwise."""

        def http(url, headers):
            v = pages.get(url)
            if v is None:
                return 404, b"not found"
            return v if isinstance(v, tuple) else (200, v)

        self.http = http
        return self

    def new_session(self, data=b""):
        sid = f"session-{len(self.sessions) + 1}"
        self.sessions[sid] = bytearray(data)
        return sid

    def blob(self, digest):
        return self.blobs.get(digest)

    # ---- blobs
    def max_read(self):
        return MAX_READ

    def store_bytes(self, data, expect=None):
        data = bytes(data)
        d = sha256(data)
        if expect is not None and expect != d:
            raise PluginError("digest-mismatch", f"the bytes are {d}, not {expect}")
        self.blobs[d] = data
        self.stored.append(d)
        return d

    def stat(self, digest):
        b = self.blobs.get(digest)
        return None if b is None else len(b)

    def open(self, digest):
        if digest not in self.blobs:
            raise PluginError.not_found(f"blob {digest} is not stored")
        return FakeSource(self, self.blobs[digest])

    def read_blob(self, digest, cap):
        return read_capped(SourceReader(self.open(digest)), cap, f"blob {digest}")

    # ---- units
    def add_unit(self, unit):
        if not (1 <= len(unit.unit_type.encode()) <= 64):
            raise PluginError.invalid(f"unit type {unit.unit_type!r} must be 1-64 bytes")
        if not (1 <= len(unit.key.encode()) <= 1024):
            raise PluginError.invalid(f"unit key must be 1-1024 bytes, is {len(unit.key.encode())}")
        if len(unit.metadata.encode()) > 1 << 20:
            raise PluginError.invalid("unit metadata is over 1 MiB")
        try:
            json.loads(unit.metadata)
        except ValueError:
            raise PluginError.invalid("unit metadata is not JSON") from None
        for d in unit.blobs:
            if d not in self.blobs:
                raise PluginError.invalid(f"unit {unit.key} names blob {d}, which is not stored")
        self.units.setdefault((unit.unit_type, unit.key), unit)

    def remove_unit(self, unit_type, key):
        return self.units.pop((unit_type, key), None) is not None

    def list_units(self, unit_type, after, limit):
        keys = sorted(
            (k for (t, k) in self.units if t == unit_type and (after is None or k.encode() > after.encode())),
            key=lambda k: k.encode(),
        )
        return [self.units[(unit_type, k)] for k in keys[: min(limit, 10000)]]

    def get_unit(self, unit_type, key):
        return self.units.get((unit_type, key))

    def units_naming(self, digest, unit_type, after, limit):
        keys = sorted(
            (
                k
                for (t, k), u in self.units.items()
                if t == unit_type and digest in u.blobs and (after is None or k.encode() > after.encode())
            ),
            key=lambda k: k.encode(),
        )
        return [self.units[(unit_type, k)] for k in keys[: min(limit, 10000)]]

    def snapshot(self):
        """Record the repository's units as a new version; its number."""
        self.versions.append(dict(self.units))
        return len(self.versions) - 1

    def changes(self, since, unit_type, after, limit):
        if since >= len(self.versions):
            raise PluginError("not-found", f"version {since} is gone")
        then = self.versions[since]
        keys = {k for (t, k) in then if t == unit_type} ^ {k for (t, k) in self.units if t == unit_type}
        keys = sorted((k for k in keys if after is None or k.encode() > after.encode()), key=lambda k: k.encode())
        out = []
        for k in keys[: min(limit, 10000)]:
            added = (unit_type, k) in self.units
            unit = self.units[(unit_type, k)] if added else then[(unit_type, k)]
            out.append(_wit.units.Changed(unit=unit, added=added))
        return out

    # ---- fetch
    def _http(self, url, headers):
        if self.http is None:
            raise PluginError("denied", f"no HTTP in this test (GET {url})")
        answer = self.http(url, headers)
        if len(answer) == 2:
            status, body = answer
            hdrs = []
        else:
            status, hdrs, body = answer
            if isinstance(hdrs, dict):
                hdrs = [_wit.types.Header(name=k, value=v) for k, v in hdrs.items()]
        return status, hdrs, bytes(body)

    def fetch(self, url, headers=(), method="GET"):
        self.gets.append(url)
        status, hdrs, body = self._http(url, list(headers))
        return _wit.fetch.Response(status=status, headers=hdrs, body=FakeSource(self, body))

    def get(self, url, headers=(), cap=64 << 20):
        self.gets.append(url)
        status, hdrs, body = self._http(url, list(headers))
        if len(body) > cap:
            raise PluginError("too-large", f"the answer of {url} is {len(body)} bytes, more than {cap}")
        return HttpResponse(status, hdrs, body)

    def fetch_blobs(self, downloads):
        out = []
        for dl in downloads:
            self.downloads.append(dl)
            if dl.digest in self.blobs:
                out.append(dl.digest)
                continue
            try:
                status, _, body = self._http(dl.url, list(dl.headers))
            except PluginError as e:
                out.append(e)
                continue
            if not 200 <= status < 300:
                out.append(PluginError("fetch-failed", f"GET {dl.url} answered HTTP {status}"))
            elif dl.size is not None and len(body) != dl.size:
                out.append(PluginError("size-mismatch", f"{dl.url} has {len(body)} bytes, not {dl.size}"))
            elif sha256(body) != dl.digest:
                out.append(PluginError("digest-mismatch", f"{dl.url} is {sha256(body)}, not {dl.digest}"))
            else:
                out.append(self.store_bytes(body))
        return out

    # ---- publications
    def publish_as(self, name, index, repository_id="repo", config="{}"):
        """Make `name` a publication with index `index` (test set-up)."""
        self.publications[name] = _wit.publications.Publication(
            name=name, repository_id=repository_id, index=index, config=config
        )

    def lookup(self, name):
        return self.publications.get(name)

    def previous(self):
        return self.previous_publication

    def publication_names(self, after, limit):
        names = sorted(n for n in self.publications if after is None or n > after)
        return names[:limit]

    # ---- sessions
    def session_length(self, id):
        s = self.sessions.get(id)
        return None if s is None else len(s)

    def commit_session(self, id, expect=None):
        data = self.sessions.pop(id, None)
        if data is None:
            raise PluginError.not_found(f"no upload session {id}")
        return self.store_bytes(bytes(data), expect)

    def abort_session(self, id):
        return self.sessions.pop(id, None) is not None

    def receive(self, digest):
        return digest in self.blobs

    # ---- repositories
    def repository(self, id):
        return self.repositories.get(id)

    def find_repositories(self, key, value):
        out = []
        for r in self.repositories.values():
            try:
                if json.loads(r.distributor_config or "{}").get(key) == value:
                    out.append(r)
            except ValueError:
                pass
        return out

    # ---- log
    def progress(self, items_done, items_total, bytes_done, bytes_total, message):
        self.progress_reports.append((items_done, items_total, bytes_done, bytes_total, message))

    def log(self, level, message):
        self.logs.append(message)


def repository(id="repo", content_type="", importer_config="{}", distributor_config="{}"):
    """A WIT `repository` record."""
    return _wit.types.Repository(
        id=id, content_type=content_type, importer_config=importer_config, distributor_config=distributor_config
    )


def request(method, path, query="", headers=(), pulled=False):
    """A WIT `request` record (`resolve`, `write`); headers as pairs or a dict."""
    from .plans import headers as to_headers

    return _wit.plugin.Request(method=method, path=path, query=query, headers=to_headers(headers), pulled=pulled)
