"""Tests of wharf_sdk against its fake host: the reader, paging, caches,
plans and the export glue."""

import io
import tarfile
import zipfile

import pytest

from wharf_sdk import PluginError, _wit, exports, paging, plans
from wharf_sdk.cache import DigestCache
from wharf_sdk.host import BlobDownload, Unit
from wharf_sdk.jsondoc import dumps_versioned, loads_versioned, settings
from wharf_sdk.reader import SourceReader, read_capped
from wharf_sdk.testing import MAX_READ, FakeHost, sha256


def test_reader_reads_seeks_and_windows():
    host = FakeHost()
    data = bytes(range(256)) * 10000  # 2.5 MB
    r = SourceReader(host.source(data), chunk=4096)
    assert len(r) == len(data)
    assert r.read(10) == data[:10]
    r.seek(-5, io.SEEK_END)
    assert r.read() == data[-5:]
    # A read over max-read is split; nothing short before the end.
    r.seek(3)
    assert r.read(MAX_READ + 100) == data[3 : 3 + MAX_READ + 100]
    w = r.window(1000, 50)
    assert w.read() == data[1000:1050]
    assert w.read_at(10, 5) == data[1010:1015]
    d = w.store_range(0, 50)
    assert host.blobs[d] == data[1000:1050]
    with pytest.raises(PluginError):
        w.store_range(10, 41)


def test_reader_store_range_checks_the_expected_digest():
    host = FakeHost()
    r = SourceReader(host.source(b"abcdef"))
    with pytest.raises(PluginError) as e:
        r.store_range(0, 3, sha256(b"xyz"))
    assert e.value.code == "digest-mismatch"
    assert sha256(b"abc") not in host.blobs
    assert r.store_range(0, 3, sha256(b"abc")) == sha256(b"abc")


def test_zipfile_and_tarfile_parse_through_the_reader():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.bin", b"x" * 3_000_000)
        z.writestr("meta/METADATA", b"Name: a\n")
    host = FakeHost()
    src = host.source(buf.getvalue())
    r = SourceReader(src, chunk=64 * 1024)
    with zipfile.ZipFile(r) as z:
        assert z.read("meta/METADATA") == b"Name: a\n"
    # Only the central directory and the member were read, not the whole file.
    assert r.bytes_read < len(buf.getvalue()) / 4

    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as t:
        info = tarfile.TarInfo("p-1/PKG-INFO")
        info.size = 7
        t.addfile(info, io.BytesIO(b"Name: p"))
    r = SourceReader(host.source(tbuf.getvalue()))
    with tarfile.open(fileobj=r, mode="r|gz") as t:
        m = next(iter(t))
        assert t.extractfile(m).read() == b"Name: p"


def test_read_capped_refuses_over_the_cap():
    host = FakeHost()
    with pytest.raises(PluginError) as e:
        read_capped(host.reader(b"x" * 11), 10, "the thing")
    assert e.value.code == "too-large" and "the thing" in e.value.message
    assert read_capped(host.reader(b"x" * 10), 10, "t") == b"x" * 10


def _unit(host, key, t="t"):
    d = host.store_bytes(key.encode())
    host.add_unit(Unit(unit_type=t, key=key, metadata="{}", blobs=[d]))


def test_paging_lists_everything_and_prefixes():
    host = FakeHost()
    for k in ["a", "ab", "abc", "abd", "b", "ab:1", "aa"]:
        _unit(host, k)
    _unit(host, "zz", t="other")
    assert [u.key for u in paging.list_all(host, "t", page=2)] == sorted(["a", "ab", "abc", "abd", "b", "ab:1", "aa"])
    assert [u.key for u in paging.list_prefixed(host, "t", "ab", page=2)] == ["ab", "ab:1", "abc", "abd"]
    assert paging.list_prefixed(host, "t", "c") == []


def test_fake_host_refuses_what_the_host_refuses():
    host = FakeHost()
    with pytest.raises(PluginError):
        host.add_unit(Unit(unit_type="t", key="k", metadata="{}", blobs=[sha256(b"never stored")]))
    with pytest.raises(PluginError):
        host.add_unit(Unit(unit_type="t", key="k" * 1025, metadata="{}", blobs=[]))
    with pytest.raises(PluginError):
        host.add_unit(Unit(unit_type="t", key="k", metadata="not json", blobs=[]))
    with pytest.raises(PluginError):
        host.open(sha256(b"nothing"))


def test_fetch_blobs_verifies_digest_and_size():
    host = FakeHost().serving({"http://f/a": b"aaa", "http://f/b": b"bbb"})
    res = host.fetch_blobs(
        [
            BlobDownload(url="http://f/a", headers=[], digest=sha256(b"aaa"), size=3),
            BlobDownload(url="http://f/b", headers=[], digest=sha256(b"xxx"), size=None),
            BlobDownload(url="http://f/a", headers=[], digest=sha256(b"aaa"), size=3),
            BlobDownload(url="http://f/missing", headers=[], digest=sha256(b"m"), size=None),
        ]
    )
    assert res[0] == sha256(b"aaa")
    assert isinstance(res[1], PluginError) and res[1].code == "digest-mismatch"
    assert res[2] == sha256(b"aaa")
    assert isinstance(res[3], PluginError)
    assert sha256(b"bbb") not in host.blobs


def test_sessions_commit_and_abort():
    host = FakeHost()
    sid = host.new_session(b"body")
    assert host.session_length(sid) == 4
    with pytest.raises(PluginError):
        host.commit_session(sid, sha256(b"other"))
    assert host.session_length(sid) is None, "a failed commit ends the session"
    sid = host.new_session(b"body")
    assert host.commit_session(sid) == sha256(b"body")


def test_changes_since_a_version_and_the_publication_replaced():
    host = FakeHost()
    assert host.previous() is None
    for k in ["a", "b", "c"]:
        host.add_unit(Unit(unit_type="t", key=k, metadata="{}", blobs=[]))
    since = host.snapshot()
    host.remove_unit("t", "b")
    host.add_unit(Unit(unit_type="t", key="d", metadata="{}", blobs=[]))
    host.add_unit(Unit(unit_type="u", key="x", metadata="{}", blobs=[]))
    changed = host.changes(since, "t", None, 10)
    assert [(c.unit.key, c.added) for c in changed] == [("b", False), ("d", True)]
    assert [c.unit.key for c in host.changes(since, "t", "b", 10)] == ["d"]
    with pytest.raises(PluginError) as gone:
        host.changes(since + 1, "t", None, 10)
    assert gone.value.code == "not-found"
    host.previous_publication = _wit.publications.PublishedBefore(name="n", index=sha256(b"i"), version=since)
    assert host.previous().version == since


def test_cache_is_bounded_by_count_and_bytes():
    c = DigestCache(max_entries=2, max_bytes=100)
    assert c.get_or_load("a", lambda: ("A", 10)) == "A"
    assert c.get_or_load("a", lambda: ("other", 10)) == "A"
    c.get_or_load("b", lambda: ("B", 10))
    c.get_or_load("c", lambda: ("C", 10))
    assert len(c) == 2 and c.get_or_load("a", lambda: ("A2", 10)) == "A2"
    c.get_or_load("huge", lambda: ("H", 1000))
    assert c.get_or_load("huge", lambda: ("H2", 1000)) == "H2", "never cached over budget"


def test_settings_and_versioned_documents():
    assert settings("") == {} and settings(" ") == {}
    assert settings('{"a":1}') == {"a": 1}
    for bad in ["[1]", "{", "3"]:
        with pytest.raises(PluginError) as e:
            settings(bad)
        assert e.value.code == "invalid-input"
    b = dumps_versioned({"z": 1, "a": {"y": 2, "b": 3}}, 1)
    assert b == b'{"a":{"b":3,"y":2},"version":1,"z":1}'
    assert loads_versioned(b, 1)["z"] == 1
    with pytest.raises(PluginError) as e:
        loads_versioned(b, 2)
    assert "publish the repository again" in e.value.message


def test_export_glue_maps_exceptions():
    @exports.task
    def fails(kind):
        if kind == "plugin":
            raise PluginError.invalid("bad input")
        raise KeyError("boom")

    with pytest.raises(_wit.Err) as e:
        fails("plugin")
    assert e.value.value == _wit.types.Error(code="invalid-input", message="bad input")
    with pytest.raises(_wit.Err) as e:
        fails("other")
    assert e.value.value.code == "plugin-error"
    assert "KeyError" in e.value.value.message and "test_sdk.py" in e.value.value.message

    @exports.route
    def resolve(req):
        raise ValueError("nope")

    plan = resolve(None)
    assert plans.status_of(plan) == 500 and "nope" in plan.value.message


def test_plans():
    p = plans.blob(sha256(b"x"), "text/html", {"vary": "Accept"})
    assert p.value.headers[0].name == "vary"
    assert plans.status_of(plans.body(201, "text/plain", "ok")) == 201
    assert plans.status_of(plans.redirect("/x")) == 302
    w = plans.write_plan("repo", new_session=True, max_body=10)
    assert isinstance(w.value.body, _wit.plugin.BodyTarget_NewSession)
    i = plans.info("n", "1", [("t", "d")], ["/t/"])
    assert i.errors.template.count("{message}") == 1


def test_units_naming_a_blob():
    host = FakeHost()
    m = host.store_bytes(b"manifest", None)
    for k, blobs in [("a", [m]), ("b", []), ("c", [m]), ("d", [m])]:
        host.add_unit(Unit(unit_type="tag", key=k, metadata="{}", blobs=blobs))
    host.add_unit(Unit(unit_type="other", key="x", metadata="{}", blobs=[m]))
    assert [u.key for u in host.units_naming(m, "tag", None, 2)] == ["a", "c"]
    assert [u.key for u in host.units_naming(m, "tag", "c", 10)] == ["d"]
    assert host.units_naming(sha256(b"none"), "tag", None, 10) == []
