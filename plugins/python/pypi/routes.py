"""`resolve`: a request under `/pypi/` into a plan.

| request | plan |
| --- | --- |
| `GET /pypi/{repo}/simple/` | the root page (blob; HTML or JSON by `Accept`/`?format=`) |
| `GET /pypi/{repo}/simple/{project}/` | the project page (blob); a non-normalized name redirects to the normalized one |
| `GET /pypi/{repo}/files/{filename}` | the file (blob: the host streams it) |
| `POST /pypi/{repo}/+upload/` | a write (twine): the body goes into a host session, then `write` |

The path arrives canonical (decoded once by the host, no `%`, `.`, `..` or
empty segments; the access gate decided on it). What the request may see is
the host's call: `publications.lookup(repo)` answers only for the
repository the gate admitted, so a name it finds nothing for is simply 404.
"""

from wharf_sdk import PluginError, plans
from wharf_sdk.cache import DigestCache
from wharf_sdk.jsondoc import loads_versioned

from . import names, pages
from .publish import INDEX_VERSION

ROUTE = "/pypi/"
UPLOAD = "+upload"
#: The marker the host's gate finds a repository name before (`/pypi/{repo}/+upload/`).
#: `+` is in no project name, so no read path contains it.
MARKERS = ["/" + UPLOAD + "/"]
#: Largest twine upload body (the host also caps it at its --max-blob-size).
MAX_UPLOAD = 64 << 30
#: Largest publication index read.
MAX_INDEX = 64 << 20

# Per instance: parsed indexes by digest (a pooled instance serves many requests).
INDEXES = DigestCache(max_entries=32, max_bytes=256 << 20)


def error_format():
    return plans.wharf_errors()


def not_found(message):
    return plans.failure(404, "not-found", message)


def usage(path):
    return not_found(
        f"nothing at {path}: pip uses /pypi/<repository>/simple/, "
        "twine uploads to /pypi/<repository>/+upload/"
    )


def method_not_allowed(method, allow):
    import json

    body = json.dumps({"error": {"code": "method-not-allowed",
                                 "message": f"{method} is not supported here; use {allow}"}})
    return plans.body(405, "application/json", body, {"allow": allow})


def index_of(host, publication):
    def load():
        data = host.read_blob(publication.index, MAX_INDEX)
        return loads_versioned(data, INDEX_VERSION), len(data)

    return INDEXES.get_or_load(publication.index, load)


def resolve(host, req):
    path = req.path
    if not path.startswith(ROUTE):
        return usage(path)
    parts = path[len(ROUTE):].split("/")
    repo = parts[0]
    if not repo:
        return usage(path)
    rest = parts[1:]
    if rest and rest[0] == UPLOAD:
        if rest not in ([UPLOAD], [UPLOAD, ""]):
            return usage(path)
        if req.method != "POST":
            return method_not_allowed(req.method, "POST")
        return plans.write_plan(repo, new_session=True, max_body=MAX_UPLOAD)
    if req.method not in ("GET", "HEAD"):
        return method_not_allowed(req.method, "GET, HEAD")
    if not rest or rest == [""]:
        return usage(path)
    kind = rest[0]
    if kind not in ("simple", "files"):
        return usage(path)

    publication = host.lookup(repo)
    if publication is None:
        return not_found(
            f"no published Python repository {repo!r} here (or you may not read it): "
            f"publish it with POST /api/v1/repositories/{repo}/publish"
        )
    try:
        index = index_of(host, publication)
    except PluginError as e:
        return plans.failure(500, "index-unreadable", f"publication {repo}: {e.message}")

    if kind == "files":
        if len(rest) != 2 or not rest[1]:
            return usage(path)
        f = index["files"].get(rest[1])
        if f is None:
            return not_found(f"repository {repo} has no file {rest[1]!r}")
        return plans.blob(f["digest"], "application/octet-stream")

    # simple/...
    if len(rest) == 1:
        return plans.redirect(f"{ROUTE}{repo}/simple/")
    chosen = pages.negotiate(_header(req, "accept"), req.query)
    if chosen is None:
        return plans.failure(
            406, "not-acceptable",
            f"no acceptable format: this index serves {pages.JSON_TYPE}, {pages.HTML_TYPE} and text/html",
        )
    fmt, media_type = chosen
    vary = {"vary": "Accept"}
    if rest == ["simple", ""]:
        return plans.blob(index["root"][fmt], media_type, vary)
    project = rest[1]
    if len(rest) > 3 or (len(rest) == 3 and rest[2] != ""):
        return usage(path)
    if not names.is_project_name(project):
        return not_found(f"{project!r} is not a project name")
    norm = names.normalize(project)
    if len(rest) == 2 or project != norm:
        # PEP 503: the normalized name, with its trailing slash.
        query = f"?{req.query}" if req.query else ""
        return plans.redirect(f"{ROUTE}{repo}/simple/{norm}/{query}")
    entry = index["projects"].get(norm)
    if entry is None:
        return not_found(f"repository {repo} has no project {project!r}")
    return plans.blob(entry[fmt], media_type, vary)


def _header(req, name):
    for h in req.headers:
        if h.name.lower() == name:
            return h.value
    return None
