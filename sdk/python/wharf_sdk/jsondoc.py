"""JSON settings and versioned JSON documents.

`settings(text)`: a repository's importer/distributor settings (or upload
params) from their JSON text, blank meaning `{}`, anything but an object an
error; `json_object(text, what)`: any other JSON object (a fetched page). `dumps_versioned`/`loads_versioned`: canonical bytes of a
publication index (sorted keys, no spaces, so equal content gives an equal
digest) and reading one back only at its own version.
"""

import json

from .errors import PluginError


def settings(text, what="settings"):
    """A dict from JSON text; blank text is `{}`."""
    if text is None or not text.strip():
        return {}
    return json_object(text, what, "are")


def json_object(text, what, verb="is"):
    """A dict from JSON text or bytes; anything else an `invalid-input`
    error that names `what`."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise PluginError.invalid(f"{what} {verb} not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise PluginError.invalid(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def canonical(value):
    """Deterministic JSON bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_versioned(doc, version, field="version"):
    doc = dict(doc)
    doc[field] = version
    return canonical(doc)


def loads_versioned(data, version, field="version", what="publication index"):
    """The document, if it is at `version`; else `PluginError` saying to publish again."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise PluginError("invalid-index", f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PluginError("invalid-index", f"{what} is not a JSON object")
    got = doc.get(field)
    if got != version:
        raise PluginError(
            "invalid-index",
            f"{what} version {got} is not {version}: publish the repository again",
        )
    return doc
