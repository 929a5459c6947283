"""Building what `describe` and `resolve` answer: plans, error formats, naming.

Short constructors over the WIT records, so plugin code reads as what it
does: `blob(digest, "text/html")`, `body(200, "text/plain", b"OK")`,
`failure(404, "not-found", "no such project")`, `redirect(url)`,
`write_plan(repository, new_session=True, max_body=...)`.
"""

from . import _wit

P = _wit.plugin
Header = _wit.types.Header
Refusal = P.Refusal


def headers(pairs):
    """`[(name, value)]` or a dict as WIT headers."""
    if isinstance(pairs, dict):
        pairs = pairs.items()
    return [Header(name=n, value=v) for n, v in pairs]


def blob(digest, media_type, extra_headers=()):
    """Serve a stored blob: the host streams it, with Range, ETag and HEAD."""
    return P.Plan_Blob(P.ServeBlob(digest=digest, media_type=media_type, headers=headers(extra_headers)))


def body(status, content_type, data, extra_headers=()):
    """Send `data` as is (no body for HEAD)."""
    if isinstance(data, str):
        data = data.encode()
    return P.Plan_Body(
        P.Body(status=status, content_type=content_type, headers=headers(extra_headers), body=bytes(data))
    )


def failure(status, code, message):
    """An error in the plugin's error format."""
    return P.Plan_Error(P.Failure(status=status, code=code, message=message))


def redirect(url):
    """302 to `url`."""
    return P.Plan_Redirect(url)


def write_plan(repository, new_session=False, session=None, max_body=0):
    """A request that changes `repository`: the host checks access, streams
    the body into a new session (`new_session`), onto `session`, or nowhere,
    then calls `write`."""
    if session is not None:
        target = P.BodyTarget_Session(session)
    elif new_session:
        target = P.BodyTarget_NewSession()
    else:
        target = P.BodyTarget_None_()
    return P.Plan_Write(P.WritePlan(repository=repository, body=target, max_body=max_body))


def written(plan, publish=False, events=()):
    """The answer of `write`."""
    return P.Written(plan=plan, publish=publish, events=list(events))


def pushed(reference, digest=None):
    """A `content.pushed` event for `written`."""
    return P.ContentEvent(action=P.ContentAction.PUSHED, reference=reference, digest=digest)


def unsupported_write(req):
    """The answer of a content type that takes no writes: 405."""
    return written(failure(405, "unsupported", f"{req.method} {req.path} changes nothing here"))


def error_format(template='{"error":{"code":"{code}","message":"{message}"}}',
                 content_type="application/json", codes=(), extra_headers=()):
    """How errors look on the plugin's routes (`{code}`, `{message}` replaced)."""
    return P.ErrorFormat(
        content_type=content_type,
        template=template,
        codes=[(r, c) for r, c in codes],
        headers=headers(extra_headers),
    )


def wharf_errors():
    """Wharf's own shape and the admin API's codes for the host's refusals."""
    return error_format(
        codes=[
            (Refusal.NAME_INVALID, "invalid-path"),
            (Refusal.UNAUTHORIZED, "unauthenticated"),
            (Refusal.DENIED, "forbidden"),
            (Refusal.NAME_UNKNOWN, "not-found"),
            (Refusal.BLOB_UNKNOWN, "not-found"),
            (Refusal.TOO_MANY_REQUESTS, "busy"),
        ]
    )


def naming_by_id(markers=()):
    """Repositories named by their ids, in the path up to the last of
    `markers`; none created on push."""
    return P.Naming(markers=list(markers), name_setting=None, create_on_push=None)


def info(name, version, content_types, routes, errors=None, naming=None):
    """`describe`'s answer; `content_types` as `[(name, description)]`."""
    return P.Info(
        name=name,
        version=version,
        content_types=[P.ContentType(name=n, description=d) for n, d in content_types],
        routes=list(routes),
        errors=errors or wharf_errors(),
        naming=naming or naming_by_id(),
    )


def published(name, index, units_added=0, units_removed=0, bytes_stored=0, message=""):
    return P.Published(name=name, index=index, summary=summary(units_added, units_removed, bytes_stored, message))


def summary(units_added=0, units_removed=0, bytes_stored=0, message=""):
    return _wit.types.Summary(
        units_added=units_added, units_removed=units_removed, bytes_stored=bytes_stored, message=message
    )


def status_of(plan):
    """The HTTP status a plan answers (for tests)."""
    v = plan.value
    if isinstance(plan, P.Plan_Blob):
        return 200
    if isinstance(plan, P.Plan_Redirect):
        return 302
    return getattr(v, "status", None)
