"""`multipart/form-data` over a host-held body, in bounded reads.

twine sends an upload as one multipart body; the host has stored it (the
write's session). The plugin learns where each part is without holding the
body: form fields (small) are read into memory, the file part is only
located (offset and length) so the host can store that range. The boundary
is the body's first line (the plugin is not given the request's
Content-Type; every multipart body starts with `--boundary`).
"""

from dataclasses import dataclass, field

from wharf_sdk import PluginError

MAX_FIELD = 1 << 20
MAX_FIELDS_TOTAL = 4 << 20
MAX_PARTS = 200
MAX_PART_HEADERS = 16 << 10
SCAN_CHUNK = 1 << 20


@dataclass
class Form:
    fields: dict = field(default_factory=dict)
    #: name -> (filename, offset, length)
    files: dict = field(default_factory=dict)


def _bad(why):
    return PluginError.invalid(f"the upload is not a valid multipart/form-data body: {why}")


def _disposition(headers):
    """`(name, filename or None)` from a part's Content-Disposition."""
    for line in headers.split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() != "content-disposition":
            continue
        params = {}
        for item in _split_params(v):
            pk, eq, pv = item.partition("=")
            if not eq:
                continue
            pv = pv.strip()
            if len(pv) >= 2 and pv[0] == '"' and pv[-1] == '"':
                pv = pv[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            params[pk.strip().lower()] = pv
        if "name" not in params:
            raise _bad("a part's Content-Disposition has no name")
        return params["name"], params.get("filename")
    raise _bad("a part has no Content-Disposition")


def _split_params(v):
    out, cur, quoted, esc = [], [], False, False
    for ch in v:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            esc = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == ";" and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _find(reader, needle, start, limit=None):
    """Offset of `needle` at or after `start` (within `limit` bytes), or -1;
    reads in chunks."""
    size = len(reader) if limit is None else min(len(reader), start + limit + len(needle))
    pos = start
    keep = len(needle) - 1
    while pos < size:
        chunk = reader.read_at(pos, min(SCAN_CHUNK + keep, size - pos))
        if not chunk:
            return -1
        i = chunk.find(needle)
        if i >= 0:
            return pos + i
        if len(chunk) <= keep:
            return -1
        pos += len(chunk) - keep
    return -1


def parse(reader):
    size = len(reader)
    head = reader.read_at(0, 200)
    if not head.startswith(b"--"):
        raise _bad("it does not start with a --boundary line (send it as twine does)")
    eol = head.find(b"\r\n")
    if eol < 3:
        raise _bad("its first line is not a --boundary line")
    boundary = head[2:eol]
    if len(boundary) > 70 or any(c < 0x20 or c > 0x7E for c in boundary):
        raise _bad("its boundary is longer than 70 characters or not printable")
    delim = b"\r\n--" + boundary
    form = Form()
    pos = eol + 2
    total = 0
    for _ in range(MAX_PARTS):
        hend = _find(reader, b"\r\n\r\n", pos, MAX_PART_HEADERS)
        if hend < 0 or hend - pos > MAX_PART_HEADERS:
            raise _bad("a part's headers do not end (or are longer than 16 KiB)")
        try:
            headers = reader.read_at(pos, hend - pos).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("a part's headers are not UTF-8") from None
        name, filename = _disposition(headers)
        start = hend + 4
        end = _find(reader, delim, start)
        if end < 0:
            raise _bad("it ends in the middle of a part (the upload was cut off?)")
        if filename is not None:
            if name in form.files:
                raise _bad(f"it holds two files named {name!r}")
            form.files[name] = (filename, start, end - start)
        else:
            if end - start > MAX_FIELD:
                raise _bad(f"field {name!r} is longer than {MAX_FIELD} bytes")
            total += end - start
            if total > MAX_FIELDS_TOTAL:
                raise _bad(f"its fields are longer than {MAX_FIELDS_TOTAL} bytes in all")
            try:
                value = reader.read_at(start, end - start).decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(f"field {name!r} is not UTF-8") from None
            form.fields.setdefault(name, value)
        after = reader.read_at(end + len(delim), 2)
        if after == b"--":
            return form
        if after != b"\r\n":
            raise _bad("a boundary is followed by neither CRLF nor --")
        pos = end + len(delim) + 2
        if pos > size:
            break
    raise _bad(f"it has more than {MAX_PARTS} parts")
