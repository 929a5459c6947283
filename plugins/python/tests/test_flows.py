"""Upload, twine's write, publish, resolve, sync and edit against the fake host."""

import hashlib
import json

import pytest

from make_dists import sdist_bytes, sdist_name, wheel_bytes, wheel_name
from pypi import edit, pages, publish, push, routes, sync, units, upload
from wharf_sdk import PluginError, plans
from wharf_sdk.testing import FakeHost, repository, request, sha256

P = plans.P


def repo(importer=None, distributor=None):
    return repository(
        "pyrepo", "python",
        json.dumps(importer or {}), json.dumps(distributor or {}),
    )


def imported(host, data, filename, **extra):
    params = json.dumps({"filename": filename, **extra})
    return upload.run(host, host.source(data), params)


def filenames(host):
    return sorted(units.meta_of(u)["filename"] for u in units.all_units(host))


# ---------------------------------------------------------------- upload --

def test_upload_stores_the_file_and_a_unit():
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    s = imported(host, data, wheel_name("alpha", "1.0"), sha256=hashlib.sha256(data).hexdigest())
    assert s.units_added == 1
    assert host.blobs[sha256(data)] == data
    (u,) = units.all_units(host)
    m = units.meta_of(u)
    assert (m["project"], m["version"], m["digest"], m["size"]) == ("alpha", "1.0", sha256(data), len(data))
    # The same again changes nothing.
    assert imported(host, data, wheel_name("alpha", "1.0")).units_added == 0


def test_upload_errors_store_nothing():
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    with pytest.raises(PluginError) as e:
        imported(host, data, wheel_name("alpha", "1.0"), sha256="0" * 64)
    assert e.value.code == "digest-mismatch" and "nothing was stored" in e.value.message
    with pytest.raises(PluginError) as e:
        upload.run(host, host.source(data), "{}")
    assert "filename" in e.value.message
    with pytest.raises(PluginError):
        imported(host, data, "../../alpha-1.0-py3-none-any.whl")
    assert host.blobs == {} and host.units == {}


def test_an_import_replaces_the_file_of_that_name():
    host = FakeHost()
    imported(host, wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))
    s = imported(host, wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))  # other random bytes? no: same
    assert s.units_added in (0, 1)
    data2 = wheel_bytes("alpha", "1.0", requires_python=">=3.9")
    s = imported(host, data2, wheel_name("alpha", "1.0"))
    assert (s.units_added, s.units_removed) == (1, 1)
    assert len(units.all_units(host)) == 1


# ------------------------------------------------------- twine (write) --

BOUNDARY = "----twine-boundary-1234"


def multipart(fields, filename, content, content_first=False):
    parts = []

    def field(name, value):
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode() + b"\r\n"
        )

    file_part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content + b"\r\n"
    if content_first:
        parts.append(file_part)
    for k, v in fields.items():
        field(k, v)
    if not content_first:
        parts.append(file_part)
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def twine_fields(name, version, data, **over):
    f = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "description": "line one\r\n--not-a-boundary\r\nline three",
    }
    f.update(over)
    return f


def post(host, body, distributor=None):
    sid = host.new_session(body)
    req = request("POST", "/pypi/pyrepo/+upload/")
    return push.write(host, req, repo(distributor=distributor), sid)


def status(plan):
    return plans.status_of(plan)


@pytest.mark.parametrize("content_first", [False, True])
def test_twine_upload_stores_only_the_file(content_first):
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    w = post(host, multipart(twine_fields("alpha", "1.0", data), wheel_name("alpha", "1.0"), data, content_first))
    assert status(w.plan) == 200, w.plan
    assert w.publish is True
    assert w.events[0].reference == wheel_name("alpha", "1.0") and w.events[0].digest == sha256(data)
    (u,) = units.all_units(host)
    assert u.blobs == [sha256(data)] and host.blobs[sha256(data)] == data
    # Again: 200, nothing new, no event.
    w = post(host, multipart(twine_fields("alpha", "1.0", data), wheel_name("alpha", "1.0"), data))
    assert status(w.plan) == 200 and w.events == []


def test_twine_upload_of_other_content_under_a_taken_name_is_409():
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    post(host, multipart(twine_fields("alpha", "1.0", data), wheel_name("alpha", "1.0"), data))
    other = wheel_bytes("alpha", "1.0", requires_python=">=3")
    w = post(host, multipart(twine_fields("alpha", "1.0", other), wheel_name("alpha", "1.0"), other))
    assert status(w.plan) == 409 and "File already exists" in w.plan.value.message
    assert [u.blobs[0] for u in units.all_units(host)] == [sha256(data)]


def test_twine_upload_with_a_wrong_hash_is_400_and_stores_no_file():
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    fields = twine_fields("alpha", "1.0", data, sha256_digest="ab" * 32)
    w = post(host, multipart(fields, wheel_name("alpha", "1.0"), data))
    assert status(w.plan) == 400
    assert "sha256_digest" in w.plan.value.message and "nothing was stored" in w.plan.value.message
    assert sha256(data) not in host.blobs and host.units == {}


@pytest.mark.parametrize(
    "case",
    ["malformed", "claims-other", "form-name", "traversal", "no-file", "action", "not-multipart", "cut"],
)
def test_hostile_twine_uploads_are_400(case):
    host = FakeHost()
    data = wheel_bytes("alpha", "1.0")
    name = wheel_name("alpha", "1.0")
    fields = twine_fields("alpha", "1.0", data)
    if case == "malformed":
        data = b"PK\x03\x04garbage"
        fields = twine_fields("alpha", "1.0", data)
        body = multipart(fields, name, data)
    elif case == "claims-other":
        data = wheel_bytes("alpha", "1.0", metadata_name="evil")
        body = multipart(twine_fields("alpha", "1.0", data), name, data)
    elif case == "form-name":
        body = multipart(twine_fields("requests", "1.0", data), name, data)
    elif case == "traversal":
        body = multipart(fields, "../../" + name, data)
    elif case == "no-file":
        body = multipart(fields, name, data).replace(b'; filename="' + name.encode() + b'"', b"")
    elif case == "action":
        body = multipart(dict(fields, **{":action": "doc_upload"}), name, data)
    elif case == "not-multipart":
        body = data
    else:
        body = multipart(fields, name, data)[:-200]
    w = post(host, body)
    assert status(w.plan) == 400, (case, w.plan)
    assert host.units == {}
    assert w.events == []


# ---------------------------------------------------- publish + resolve --

def published(host, files):
    for data, filename in files:
        imported(host, data, filename)
    p = publish.publish(host, repo())
    host.publish_as(p.name, p.index)
    routes.INDEXES.__init__()
    return p


def get(host, path, accept=None, method="GET", query=""):
    headers = {"accept": accept} if accept else {}
    return routes.resolve(host, request(method, path, query=query, headers=headers))


def body_of(host, plan):
    assert isinstance(plan, P.Plan_Blob), plan
    return host.blobs[plan.value.digest]


def test_publish_and_serve_the_simple_index():
    host = FakeHost()
    w = wheel_bytes("Beta.Pkg", "2.0", requires_python=">=3.8")
    s = sdist_bytes("alpha", "1.0")
    p = published(host, [(w, wheel_name("Beta.Pkg", "2.0")), (s, sdist_name("alpha", "1.0")),
                         (wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))])
    assert p.name == "pyrepo" and "3 files of 2 projects" in p.summary.message

    root = body_of(host, get(host, "/pypi/pyrepo/simple/")).decode()
    assert '<a href="alpha/">alpha</a>' in root and '<a href="beta-pkg/">Beta.Pkg</a>' in root

    plan = get(host, "/pypi/pyrepo/simple/beta-pkg/")
    assert plan.value.media_type == "text/html"
    assert plan.value.headers[0].value == "Accept"
    page = body_of(host, plan).decode()
    hexd = hashlib.sha256(w).hexdigest()
    assert f'href="../../files/Beta_Pkg-2.0-py3-none-any.whl#sha256={hexd}"' in page
    assert 'data-requires-python="&gt;=3.8"' in page

    plan = get(host, "/pypi/pyrepo/simple/alpha/", accept=pages.JSON_TYPE)
    assert plan.value.media_type == pages.JSON_TYPE
    doc = json.loads(body_of(host, plan))
    assert doc["meta"]["api-version"] == "1.1" and doc["versions"] == ["1.0"]
    assert [f["filename"] for f in doc["files"]] == ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz"]
    assert doc["files"][1]["hashes"]["sha256"] == hashlib.sha256(s).hexdigest()
    assert doc["files"][1]["size"] == len(s)

    # pip's Accept header picks JSON; a browser's picks HTML; format= wins.
    pip_accept = f"{pages.JSON_TYPE}, {pages.HTML_TYPE}; q=0.1, text/html; q=0.01"
    assert get(host, "/pypi/pyrepo/simple/alpha/", accept=pip_accept).value.media_type == pages.JSON_TYPE
    assert get(host, "/pypi/pyrepo/simple/alpha/", accept="text/html,*/*;q=0.8").value.media_type == "text/html"
    assert get(host, "/pypi/pyrepo/simple/alpha/", query=f"format={pages.JSON_TYPE}").value.media_type == pages.JSON_TYPE
    assert status(get(host, "/pypi/pyrepo/simple/alpha/", accept="image/png")) == 406

    f = get(host, "/pypi/pyrepo/files/alpha-1.0.tar.gz")
    assert f.value.digest == sha256(s)
    assert get(host, "/pypi/pyrepo/files/alpha-1.0.tar.gz", method="HEAD").value.digest == sha256(s)


def test_names_are_normalized_by_redirect():
    host = FakeHost()
    published(host, [(wheel_bytes("Beta.Pkg", "2.0"), wheel_name("Beta.Pkg", "2.0"))])
    assert get(host, "/pypi/pyrepo/simple/Beta.Pkg/").value == "/pypi/pyrepo/simple/beta-pkg/"
    assert get(host, "/pypi/pyrepo/simple/beta-pkg").value == "/pypi/pyrepo/simple/beta-pkg/"
    assert get(host, "/pypi/pyrepo/simple").value == "/pypi/pyrepo/simple/"


@pytest.mark.parametrize(
    "path",
    ["/pypi/", "/pypi/pyrepo/", "/pypi/pyrepo/other/", "/pypi/pyrepo/simple/missing/",
     "/pypi/pyrepo/files/missing-1.0.tar.gz", "/pypi/pyrepo/files/", "/pypi/nope/simple/",
     "/pypi/pyrepo/simple/alpha/extra", "/pypi/pyrepo/files/a/b", "/pypi/pyrepo/simple/a<b/",
     "/pypi/pyrepo/+upload/x"],
)
def test_unknown_paths_are_404(path):
    host = FakeHost()
    published(host, [(wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))])
    assert status(get(host, path)) == 404, path


def test_methods():
    host = FakeHost()
    published(host, [(wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))])
    plan = get(host, "/pypi/pyrepo/simple/", method="POST")
    assert status(plan) == 405 and plan.value.headers[0].value == "GET, HEAD"
    assert status(get(host, "/pypi/pyrepo/+upload/", method="GET")) == 405
    w = get(host, "/pypi/pyrepo/+upload/", method="POST")
    assert isinstance(w, P.Plan_Write) and w.value.repository == "pyrepo"
    assert isinstance(w.value.body, P.BodyTarget_NewSession)


def test_an_unreadable_index_is_a_500():
    host = FakeHost()
    host.publish_as("pyrepo", host.store_bytes(b'{"version": 99}'))
    routes.INDEXES.__init__()
    plan = get(host, "/pypi/pyrepo/simple/")
    assert status(plan) == 500 and "publish the repository again" in plan.value.message


def test_two_files_of_one_name_are_a_publish_conflict():
    host = FakeHost()
    imported(host, wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))
    other = wheel_bytes("alpha", "1.0", requires_python=">=3")
    from pypi import dists
    meta = dists.read(host.reader(other), wheel_name("alpha", "1.0"))
    host.add_unit(units.to_unit(meta, host.store_bytes(other), len(other)))  # as a copy would
    with pytest.raises(PluginError) as e:
        publish.publish(host, repo())
    assert e.value.code == "conflict"


def test_the_index_caches_per_digest():
    host = FakeHost()
    published(host, [(wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))])
    for _ in range(5):
        get(host, "/pypi/pyrepo/simple/alpha/")
    assert routes.INDEXES.loads == 1


# ------------------------------------------------------------------ sync --

FEED = "http://feed.test/simple/"


def feed_host(json_api=False, tamper=False):
    files = {
        "alpha": [(wheel_name("alpha", "1.0"), wheel_bytes("alpha", "1.0")),
                  (sdist_name("alpha", "1.0"), sdist_bytes("alpha", "1.0"))],
        "beta-pkg": [(wheel_name("Beta.Pkg", "2.0"), wheel_bytes("Beta.Pkg", "2.0"))],
    }
    site = {}
    root = "".join(f'<a href="{p}/">{p}</a>' for p in files)
    site[FEED] = (200, {"content-type": "text/html"}, root.encode())
    for p, fl in files.items():
        links = []
        for fn, data in fl:
            site[f"http://feed.test/files/{fn}"] = (200, {}, data if not tamper else data + b"x")
            links.append(f'<a href="../../files/{fn}#sha256={hashlib.sha256(data).hexdigest()}" '
                         f'data-requires-python="&gt;=3">{fn}</a>')
        if json_api:
            doc = {"meta": {"api-version": "1.0"}, "name": p, "files": [
                {"filename": fn, "url": f"../../files/{fn}", "hashes": {"sha256": hashlib.sha256(d).hexdigest()},
                 "size": len(d)} for fn, d in fl]}
            site[f"{FEED}{p}/"] = (200, {"content-type": pages.JSON_TYPE}, json.dumps(doc).encode())
        else:
            site[f"{FEED}{p}/"] = (200, {"content-type": "text/html"}, "".join(links).encode())

    def http(url, headers):
        return site.get(url, (404, {}, b"no"))

    return FakeHost(http=http)


@pytest.mark.parametrize("json_api", [False, True])
def test_sync_mirrors_a_simple_index(json_api):
    host = feed_host(json_api)
    s = sync.run(host, repo({"feed": FEED}))
    assert s.units_added == 3, s
    assert filenames(host) == ["Beta_Pkg-2.0-py3-none-any.whl", "alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz"]
    # Again: nothing new, nothing downloaded twice.
    s = sync.run(host, repo({"feed": FEED}))
    assert (s.units_added, s.units_removed) == (0, 0)


def test_sync_includes_and_excludes():
    host = feed_host()
    sync.run(host, repo({"feed": FEED, "includes": ["Beta_Pkg"]}))
    assert filenames(host) == ["Beta_Pkg-2.0-py3-none-any.whl"]
    assert FEED not in host.gets, "named includes need no root page"
    s = sync.run(host, repo({"feed": FEED, "excludes": ["beta*"]}))
    assert filenames(host) == ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz"]
    assert (s.units_added, s.units_removed) == (2, 1)


def test_a_tampered_feed_fails_the_sync_and_changes_nothing():
    host = feed_host(tamper=True)
    with pytest.raises(PluginError) as e:
        sync.run(host, repo({"feed": FEED}))
    assert "3 of 3 files failed" in e.value.message and "digest-mismatch" not in e.value.code
    assert host.units == {}


def test_a_feed_file_of_another_project_fails_the_sync():
    host = feed_host()
    evil = wheel_bytes("alpha", "1.0", metadata_name="evil")
    orig = host.http

    def http(url, headers):
        if url.endswith("/alpha/"):
            return 200, {}, (f'<a href="../../files/alpha-1.0-py3-none-any.whl#sha256='
                             f'{hashlib.sha256(evil).hexdigest()}">x</a>').encode()
        if url.endswith("alpha-1.0-py3-none-any.whl"):
            return 200, {}, evil
        return orig(url, headers)

    host.http = http
    with pytest.raises(PluginError) as e:
        sync.run(host, repo({"feed": FEED, "includes": ["alpha"]}))
    assert "METADATA says 'evil'" in e.value.message
    assert host.units == {}


def test_sync_settings_errors():
    host = feed_host()
    for bad in [{}, {"feed": "ftp://x/"}, {"feed": FEED, "includes": "a,b"} and {"feed": FEED, "includes": [1]}]:
        with pytest.raises(PluginError) as e:
            sync.run(host, repo(bad))
        assert e.value.code == "invalid-input"
    page = b'<a href="../../files/alpha-1.0.tar.gz">alpha-1.0.tar.gz</a>'
    host = FakeHost(http=lambda url, h: (200, {}, page))
    with pytest.raises(PluginError) as e:
        sync.run(host, repo({"feed": FEED, "includes": ["alpha"]}))
    assert "has no sha256" in e.value.message


# ------------------------------------------------------------------ edit --

def test_select_and_remove():
    host = FakeHost()
    imported(host, wheel_bytes("alpha", "1.0"), wheel_name("alpha", "1.0"))
    imported(host, sdist_bytes("alpha", "1.0"), sdist_name("alpha", "1.0"))
    imported(host, wheel_bytes("alpha", "2.0"), wheel_name("alpha", "2.0"))
    imported(host, wheel_bytes("gamma", "0.1"), wheel_name("gamma", "0.1"))
    assert len(edit.select(host, ["alpha"])) == 3
    assert len(edit.select(host, ["alpha==1.0"])) == 2
    assert len(edit.select(host, [wheel_name("gamma", "0.1")])) == 1
    with pytest.raises(PluginError) as e:
        edit.select(host, ["nope"])
    assert e.value.code == "not-found"
    with pytest.raises(PluginError) as e:
        edit.select(host, ["not a name"])
    assert e.value.code == "invalid"
    s = edit.edit(host, P.Change_Remove(["alpha==1.0"]))
    assert s.units_removed == 2
    assert filenames(host) == ["alpha-2.0-py3-none-any.whl", "gamma-0.1-py3-none-any.whl"]
    with pytest.raises(PluginError) as e:
        edit.edit(host, P.Change_Tag(P.TagEdit(name="a", target="b")))
    assert e.value.code == "unsupported"
