"""`twine upload` to a repository: `POST /pypi/{repo}/+upload/`.

`resolve` answers the POST with a `write` plan: the host admits the caller
(HTTP basic credentials of a user who may update the repository), streams
the multipart body into a new upload session, and calls `write`, here.
The session is committed as a blob (the multipart body); the file part is
located in it with bounded reads, its metadata read from the archive, and
only that range stored (`store-range`), verified against the form's
`sha256_digest`. Any error answers 4xx, so nothing the call staged is
committed; the multipart blob itself is left unreferenced and orphan
cleanup removes it.

Answers as PyPI's upload API does: 200 on success (also for the very same
file again), 409 for a file name the repository holds with other content
(twine's `--skip-existing` recognises it), 400 with a sentence otherwise.
"""

from wharf_sdk import PluginError, plans
from wharf_sdk.jsondoc import settings
from wharf_sdk.reader import SourceReader
from wharf_sdk.host import release

from . import dists, multipart, names, units
from .upload import expected_digest


def _answer(status, message):
    return plans.written(plans.failure(status, _code(status), message))


def _code(status):
    return {400: "invalid-input", 409: "file-exists", 403: "forbidden"}.get(status, "upload-failed")


def write(host, req, repo, session):
    if session is None:
        return _answer(400, "the upload has no body: upload with twine")
    try:
        blob = host.commit_session(session)
    except PluginError as e:
        return _answer(400, f"the upload body could not be stored: {e.message}")
    source = host.open(blob)
    try:
        return _write(host, repo, SourceReader(source))
    except PluginError as e:
        status = 409 if e.code == "conflict" else 400
        return _answer(status, e.message)
    finally:
        release(source)


def _write(host, repo, body):
    form = multipart.parse(body)
    action = form.fields.get(":action")
    if action != "file_upload":
        raise PluginError.invalid(
            f"unsupported :action {action!r}: this repository accepts file uploads (twine upload) only"
        )
    if "content" not in form.files:
        raise PluginError.invalid("the upload has no file (form part 'content')")
    filename, offset, length = form.files["content"]
    names.check_filename(filename)
    expect = expected_digest(form.fields.get("sha256_digest"), "sha256_digest")
    data = body.window(offset, length)
    meta = dists.read(data, filename)
    for field, ours in (("name", meta.name), ("version", meta.version)):
        theirs = form.fields.get(field)
        if theirs is None:
            continue
        same = (names.normalize(theirs) == names.normalize(ours)) if field == "name" else (
            names.version_key(theirs) == names.version_key(ours))
        if not same:
            raise PluginError.invalid(
                f"{filename}: the upload form says {field} {theirs!r} but the archive says {ours!r}"
            )
    try:
        digest = data.store_range(0, length, expect)
    except PluginError as e:
        if expect is not None and ("digest" in e.code or "digest" in e.message):
            raise PluginError.invalid(
                f"{filename}: its sha256 is not the sha256_digest {expect[7:]} sent with it "
                "(the file was damaged on the way?); nothing was stored: upload it again"
            ) from None
        raise
    added, _, other = units.put(host, meta, digest, length, replace=False)
    if other is not None:
        raise PluginError.conflict(
            f"File already exists: {filename} is in repository {repo.id} with other content ({other}); "
            "a file name is uploaded once: bump the version"
        )
    auto_publish = settings(repo.distributor_config, "distributor settings").get("auto_publish", True)
    plan = plans.body(200, "text/plain", f"OK: {filename} {'stored' if added else 'already present'}\n")
    return plans.written(plan, publish=bool(auto_publish), events=[plans.pushed(filename, digest)] if added else [])
