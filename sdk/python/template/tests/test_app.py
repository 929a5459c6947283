"""The template's logic against the SDK's fake host."""

import app
from wharf_sdk import PluginError, plans
from wharf_sdk.testing import FakeHost, repository, request, sha256


def test_upload_publish_resolve():
    host = FakeHost()
    app.upload(host, host.source(b"hello"), '{"name": "hello.txt"}')
    assert host.blobs[sha256(b"hello")] == b"hello"
    p = app.publish(host, repository("r"))
    host.publish_as(p.name, p.index)
    plan = app.resolve(host, request("GET", "/notes/r/hello.txt"))
    assert plan.value.digest == sha256(b"hello")
    assert plans.status_of(app.resolve(host, request("GET", "/notes/r/missing"))) == 404
    assert plans.status_of(app.resolve(host, request("GET", "/notes/other/hello.txt"))) == 404


def test_bad_names_are_refused():
    host = FakeHost()
    try:
        app.upload(host, host.source(b"x"), '{"name": "../x"}')
    except PluginError as e:
        assert e.code == "invalid-input"
    else:
        raise AssertionError("accepted ../x")
    assert host.blobs == {}


def test_describe():
    info = app.Plugin().describe()
    assert info.name == "notes" and info.routes == ["/notes/"]
