"""The importer's sync: mirror another simple index (PEP 503 HTML or PEP 691
JSON), optionally only some projects.

Importer settings:

    {"feed": "http://mirror.example/simple/",
     "includes": ["requests", "django*"],   # project names or globs; default all
     "excludes": ["*-dev"]}                 # applied after includes

The plugin fetches the root page (or only the included projects' pages when
`includes` names projects without globs), each project page, and has the
host download the files (`fetch-blobs`: parallel, verified against the
page's `#sha256=`, skipping what is stored). Each file's metadata is then
read from the archive (bounded reads) and must name the project it was
listed under. Files on another origin than the feed's are refused by the
host (its outbound rule): mirror indexes whose files are on the same host.
The repository then holds exactly the selected files; unit changes commit
only if the whole sync succeeds.
"""

import fnmatch
import html.parser
import re
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from wharf_sdk import PluginError, plans
from wharf_sdk.host import BlobDownload, Header, release
from wharf_sdk.jsondoc import json_object, settings
from wharf_sdk.reader import SourceReader

from . import dists, names, pages, units

ACCEPT = f"{pages.JSON_TYPE}, {pages.HTML_TYPE};q=0.2, text/html;q=0.01"
MAX_PAGE = 64 << 20
BATCH = 32
FAILURES_SHOWN = 5
_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors = []
        self._current = None
        self.base = None

    def handle_starttag(self, tag, attrs):
        if tag == "base":
            href = dict(attrs).get("href")
            if href and self.base is None:
                self.base = href
        if tag == "a":
            self._current = (dict(attrs), [])

    def handle_data(self, data):
        if self._current is not None:
            self._current[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._current is not None:
            attrs, text = self._current
            self.anchors.append((attrs, "".join(text).strip()))
            self._current = None


def _config(importer_config):
    c = settings(importer_config, "importer settings")
    feed = c.get("feed")
    if not isinstance(feed, str) or not feed:
        raise PluginError.invalid(
            'the repository has no feed to sync from: set importer_config {"feed": "http://host/simple/"}'
        )
    parts = urlsplit(feed)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PluginError.invalid(f"feed {feed!r} is not an http:// or https:// URL")
    if not feed.endswith("/"):
        feed += "/"
    patterns = {}
    for key in ("includes", "excludes"):
        v = c.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise PluginError.invalid(f"importer setting {key} must be a list of project names or globs")
        patterns[key] = [names.normalize(x) if not any(ch in x for ch in "*?[") else x.lower() for x in v]
    return feed, patterns["includes"], patterns["excludes"]


def _selected(norm, includes, excludes):
    if includes and not any(fnmatch.fnmatchcase(norm, p) for p in includes):
        return False
    return not any(fnmatch.fnmatchcase(norm, p) for p in excludes)


def _get_page(host, url):
    r = host.get(url, [Header(name="Accept", value=ACCEPT)], MAX_PAGE)
    if r.status == 404:
        return None, None
    if not 200 <= r.status < 300:
        raise PluginError("fetch-failed", f"GET {url} answered HTTP {r.status}")
    ctype = (r.header("content-type") or "").split(";")[0].strip().lower()
    return ctype, r.body


def _parse_json(url, body):
    return json_object(body, f"the PEP 691 page {url}")


def _links(url, body):
    """The anchors of an HTML page as (attributes, text), and the URL their
    hrefs are relative to (the page's `<base>`, if any)."""
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    base = urljoin(url, parser.base) if parser.base else url
    return base, parser.anchors


def projects_of(host, feed):
    """`[(normalized, url)]` the root page lists."""
    ctype, body = _get_page(host, feed)
    if body is None:
        raise PluginError("fetch-failed", f"GET {feed} answered HTTP 404: is the feed a simple index root?")
    out = {}
    if ctype == pages.JSON_TYPE:
        for p in _parse_json(feed, body).get("projects", []):
            name = p.get("name") if isinstance(p, dict) else None
            if isinstance(name, str) and names.is_project_name(name):
                norm = names.normalize(name)
                out[norm] = urljoin(feed, norm + "/")
    else:
        base, anchors = _links(feed, body)
        for attrs, text in anchors:
            href = attrs.get("href")
            if not href or not names.is_project_name(text):
                continue
            out[names.normalize(text)] = urljoin(base, href)
    return sorted(out.items())


def files_of(host, project, url):
    """The files a project page lists: `[{filename, url, digest, size, requires_python}]`,
    or None for a project the feed does not have."""
    ctype, body = _get_page(host, url)
    if body is None:
        return None
    found = []
    if ctype == pages.JSON_TYPE:
        for f in _parse_json(url, body).get("files", []):
            if not isinstance(f, dict):
                continue
            sha = (f.get("hashes") or {}).get("sha256")
            size = f.get("size") if isinstance(f.get("size"), int) else None
            found.append((f.get("filename"), urljoin(url, f.get("url", "")), sha, size))
    else:
        base, anchors = _links(url, body)
        for attrs, text in anchors:
            href = attrs.get("href")
            if not href:
                continue
            link, frag = urldefrag(urljoin(base, href))
            sha = None
            for item in frag.split("&"):
                k, _, v = item.partition("=")
                if k == "sha256":
                    sha = v
            filename = unquote(urlsplit(link).path.rsplit("/", 1)[-1]) or text
            found.append((filename, link, sha, None))
    out = []
    for filename, link, sha, size in found:
        if not isinstance(filename, str) or not (filename.endswith(".whl") or filename.endswith(".tar.gz")):
            continue  # eggs, .exe, .zip sdists: not mirrored
        names.check_filename(filename)
        if not isinstance(sha, str) or not _HEX.match(sha.lower()):
            raise PluginError.invalid(
                f"{url}: {filename} has no sha256 (a #sha256=<hex> link or hashes.sha256); "
                "files are only mirrored with a hash to verify"
            )
        out.append({"filename": filename, "url": link, "digest": "sha256:" + sha.lower(), "size": size})
    return out


def run(host, repo):
    feed, includes, excludes = _config(repo.importer_config)
    host.progress(0, 0, 0, 0, "fetching the index")
    if includes and not any(any(ch in p for ch in "*?[") for p in includes):
        candidates = [(p, urljoin(feed, p + "/")) for p in sorted(set(includes))]
    else:
        candidates = projects_of(host, feed)
    candidates = [(p, u) for p, u in candidates if _selected(p, includes, excludes)]
    wanted = []
    for i, (project, url) in enumerate(candidates):
        files = files_of(host, project, url)
        if files is None:
            host.log("warn", f"{feed} has no project {project}")
            continue
        for f in files:
            f["project"] = project
        wanted.extend(files)
        host.progress(i + 1, len(candidates), 0, 0, "reading project pages")
    seen = {}
    for f in wanted:
        other = seen.get(f["filename"])
        if other is not None and other["digest"] != f["digest"]:
            raise PluginError.invalid(f"{feed} lists {f['filename']} twice with different hashes")
        seen[f["filename"]] = f
    wanted = [seen[k] for k in sorted(seen)]

    metas = _download(host, feed, wanted)

    held = {u.key for u in units.all_units(host)}
    want_keys = {units.key(m.filename, f["digest"]) for f, m, _ in metas}
    removed = 0
    for k in sorted(held - want_keys):
        if host.remove_unit(units.UNIT_TYPE, k):
            removed += 1
    added = 0
    for f, m, size in metas:
        if units.key(m.filename, f["digest"]) not in held:
            host.add_unit(units.to_unit(m, f["digest"], size))
            added += 1
    return plans.summary(
        units_added=added,
        units_removed=removed,
        bytes_stored=0,
        message=f"mirrored {len(metas)} files of {len(candidates)} projects from {feed}: {added} added, {removed} removed",
    )


def _download(host, feed, wanted):
    total = len(wanted)
    failures = []
    metas = []
    done = 0
    for start in range(0, total, BATCH):
        batch = wanted[start : start + BATCH]
        results = host.fetch_blobs(
            [BlobDownload(url=f["url"], headers=[], digest=f["digest"], size=f["size"]) for f in batch]
        )
        if len(results) != len(batch):
            raise PluginError("host", f"fetch-blobs answered {len(results)} results for {len(batch)} downloads")
        for f, r in zip(batch, results):
            done += 1
            if isinstance(r, PluginError):
                failures.append(f"{f['filename']}: {r.message}")
                continue
            try:
                metas.append((f, _metadata(host, f), host.stat(r) or f["size"] or 0))
            except PluginError as e:
                failures.append(e.message)
        host.progress(done, total, 0, 0, "downloading files")
    if failures:
        shown = "; ".join(failures[:FAILURES_SHOWN])
        more = f" (and {len(failures) - FAILURES_SHOWN} more)" if len(failures) > FAILURES_SHOWN else ""
        raise PluginError("sync-failed", f"{len(failures)} of {total} files failed: {shown}{more}")
    return metas


def _metadata(host, f):
    """The file's metadata from the archive; it must be the listed project's."""
    try:
        source = host.open(f["digest"])
    except PluginError:
        # Not stored (an on_demand download policy): what the name says.
        name, version = names.parse_filename(f["filename"])
        meta = dists.DistMeta(f["filename"], name, version, "", "", names.packagetype(f["filename"]))
    else:
        try:
            meta = dists.read(SourceReader(source), f["filename"])
        finally:
            release(source)
    if meta.project != f["project"]:
        raise PluginError.invalid(
            f"{f['filename']} is listed under project {f['project']} but holds {meta.name}"
        )
    return meta
