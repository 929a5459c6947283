"""The unit: one distribution file (a wheel or an sdist).

Units are shared by every repository, so the key names the content:
`{filename}:sha256:{hex}`. A repository holds at most one file per file
name (PyPI's rule); the files at a name are the keys that start with
`{filename}:sha256:` and are exactly 72 bytes longer than the name, found
with one prefix listing.
"""

import json

from wharf_sdk.host import Unit
from wharf_sdk.paging import list_all, list_prefixed

from . import names

UNIT_TYPE = "python-dist"
DIGEST_SUFFIX = len(":sha256:") + 64


def key(filename, digest):
    return f"{filename}:{digest}"


def to_unit(meta, digest, size):
    data = {
        "filename": meta.filename,
        "name": meta.name,
        "project": names.normalize(meta.name),
        "version": meta.version,
        "requires_python": meta.requires_python,
        "summary": meta.summary,
        "packagetype": meta.packagetype,
        "digest": digest,
        "size": size,
    }
    return Unit(
        unit_type=UNIT_TYPE,
        key=key(meta.filename, digest),
        metadata=json.dumps(data, sort_keys=True),
        blobs=[digest],
    )


def meta_of(unit):
    return json.loads(unit.metadata)


def at_filename(host, filename):
    """The repository's units of that file name."""
    prefix = f"{filename}:sha256:"
    return [u for u in list_prefixed(host, UNIT_TYPE, prefix) if len(u.key) == len(filename) + DIGEST_SUFFIX]


def all_units(host):
    return list_all(host, UNIT_TYPE)


def put(host, meta, digest, size, replace=True):
    """Add the file; other content at its file name is removed (`replace`) or
    reported: answers (added, removed, conflicting_digest)."""
    wanted = key(meta.filename, digest)
    present = False
    removed = 0
    for old in at_filename(host, meta.filename):
        if old.key == wanted:
            present = True
        elif replace:
            if host.remove_unit(UNIT_TYPE, old.key):
                removed += 1
        else:
            return 0, 0, old.key[len(meta.filename) + 1 :]
    if not present:
        host.add_unit(to_unit(meta, digest, size))
    return (0 if present else 1), removed, None
