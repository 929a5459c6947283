"""The simple repository API pages: PEP 503 HTML and PEP 691 JSON
(api-version 1.1: with `size` and `versions`, PEP 700).

Pages are rendered once at publish time and stored as blobs; `resolve`
answers a request with a `blob` plan, so the host streams them (ETag,
conditional GETs) and nothing is rendered per request. File links are
relative (`../../files/{filename}#sha256=...` from a project page), so the
pages are right whatever host name clients use.
"""

import html
import json
from urllib.parse import quote

API_VERSION = "1.1"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


def _file_href(filename):
    return "../../files/" + quote(filename, safe="")


def _version_sort_key(v):
    parts = []
    for piece in v.replace("-", ".").replace("_", ".").split("."):
        parts.append((0, int(piece), "") if piece.isdigit() else (1, 0, piece))
    return parts


def project_html(name, files):
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Links for {html.escape(name)}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {html.escape(name)}</h1>",
    ]
    for f in files:
        attrs = f'href="{html.escape(_file_href(f["filename"]))}#sha256={f["digest"][len("sha256:"):]}"'
        if f.get("requires_python"):
            attrs += f' data-requires-python="{html.escape(f["requires_python"])}"'
        lines.append(f"    <a {attrs}>{html.escape(f['filename'])}</a><br />")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def project_json(name, files):
    out = []
    for f in files:
        entry = {
            "filename": f["filename"],
            "url": _file_href(f["filename"]),
            "hashes": {"sha256": f["digest"][len("sha256:"):]},
            "size": f["size"],
        }
        if f.get("requires_python"):
            entry["requires-python"] = f["requires_python"]
        out.append(entry)
    versions = sorted({f["version"] for f in files}, key=_version_sort_key)
    doc = {"meta": {"api-version": API_VERSION}, "name": name, "files": out, "versions": versions}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def root_html(projects):
    """`projects`: `[(normalized, display name)]`, sorted."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    for norm, display in projects:
        lines.append(f'    <a href="{quote(norm, safe="")}/">{html.escape(display)}</a><br />')
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def root_json(projects):
    doc = {"meta": {"api-version": API_VERSION}, "projects": [{"name": d} for _, d in projects]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def negotiate(accept, query):
    """`"json"`, `"html"` (with the media type to answer) or None (406),
    from `?format=` or the Accept header, PEP 691's way."""
    from urllib.parse import parse_qs

    fmt = parse_qs(query or "").get("format")
    if fmt:
        # An unencoded `+` in a query reads as a space.
        accept = fmt[-1].replace(" ", "+")
    if not accept:
        return "html", "text/html"
    offers = {
        JSON_TYPE: ("json", JSON_TYPE),
        "application/vnd.pypi.simple.latest+json": ("json", JSON_TYPE),
        HTML_TYPE: ("html", HTML_TYPE),
        "application/vnd.pypi.simple.latest+html": ("html", HTML_TYPE),
        "text/html": ("html", "text/html"),
        "text/*": ("html", "text/html"),
        "*/*": ("html", "text/html"),
    }
    best = None
    for i, item in enumerate(accept.split(",")):
        fields = [x.strip() for x in item.split(";")]
        media = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            k, _, v = param.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media in offers and q > 0:
            rank = (q, -i)
            if best is None or rank > best[0]:
                best = (rank, offers[media])
    return best[1] if best else None
