"""The multipart parser over bounded reads: what twine sends, and what it must refuse."""

import pytest

from pypi import multipart
from wharf_sdk import PluginError
from wharf_sdk.testing import FakeHost


def parse(body, chunk=None):
    if chunk:
        multipart.SCAN_CHUNK, old = chunk, multipart.SCAN_CHUNK
    try:
        return multipart.parse(FakeHost().reader(body))
    finally:
        if chunk:
            multipart.SCAN_CHUNK = old


def body(parts, boundary=b"XyZ"):
    out = b""
    for headers, data in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def test_fields_and_a_file_located_not_read():
    content = b"\r\n--XyY\r\n-XyZ\n--XyZ\r\n--Xy" * 1000  # look-alikes of the delimiter
    b = body([
        (b'Content-Disposition: form-data; name="name"', b"alpha"),
        (b'Content-Disposition: form-data; name="content"; filename="a;b \\"c\\".whl"\r\nContent-Type: x', content),
        (b'Content-Disposition: form-data; name="after"', "ünï".encode()),
    ])
    for chunk in (None, 7, 64):  # the delimiter split across scan chunks too
        form = parse(b, chunk)
        assert form.fields == {"name": "alpha", "after": "ünï"}
        filename, offset, length = form.files["content"]
        assert filename == 'a;b "c".whl'
        assert b[offset : offset + length] == content


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"no boundary line", "does not start with a --boundary"),
        (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue without end", "ends in the middle"),
        (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--", "no Content-Disposition"),
        (b"--XyZ\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\nv\r\n--XyZ--", "headers do not end"),
        (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XyZ??", "neither CRLF nor --"),
        (b"--" + b"b" * 71 + b"\r\n", "longer than 70"),
    ],
)
def test_malformed_bodies_are_refused_clearly(raw, why):
    with pytest.raises(PluginError) as e:
        parse(raw)
    assert e.value.code == "invalid-input"
    assert why in e.value.message, e.value.message


def test_two_files_of_one_name_are_refused():
    b = body([
        (b'Content-Disposition: form-data; name="content"; filename="a.whl"', b"1"),
        (b'Content-Disposition: form-data; name="content"; filename="b.whl"', b"2"),
    ])
    with pytest.raises(PluginError) as e:
        parse(b)
    assert "two files" in e.value.message
