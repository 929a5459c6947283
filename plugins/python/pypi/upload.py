"""The admin API's import: one uploaded wheel or sdist.

`POST /api/v1/repositories/{id}/import {"upload_id": ..., "params":
{"filename": "mypkg-1.0-py3-none-any.whl", "sha256": "<hex>"}}` (`sha256`
optional). The metadata is read from the archive through bounded reads;
the host stores the file (`store-range`, with the expected digest when
given), and the unit replaces any other file of that name in the
repository.
"""

import re

from wharf_sdk import PluginError, plans
from wharf_sdk.jsondoc import settings
from wharf_sdk.reader import SourceReader

from . import dists, units

_HEX = re.compile(r"^[0-9a-f]{64}$")


def expected_digest(value, what):
    """`sha256:<hex>` from a hex digest (or one already prefixed), else None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PluginError.invalid(f"{what} must be a string of 64 hex digits")
    hexpart = value[len("sha256:"):] if value.startswith("sha256:") else value
    hexpart = hexpart.lower()
    if not _HEX.match(hexpart):
        raise PluginError.invalid(f"{what} {value!r} is not a sha256 (64 hex digits)")
    return "sha256:" + hexpart


def store_checked(reader, meta, expect, size):
    """Store the whole reader as the file, refusing another digest."""
    try:
        return reader.store_range(0, size, expect)
    except PluginError as e:
        if e.code in ("digest-mismatch", "invalid-digest") or "digest" in e.message:
            raise PluginError(
                "digest-mismatch",
                f"{meta.filename}: the file's sha256 is not the {expect} it was sent with; "
                "nothing was stored: upload the file again",
            ) from None
        raise


def run(host, source, params):
    p = settings(params, "import parameters")
    filename = p.get("filename")
    if filename is None:
        raise PluginError.invalid(
            'give the file name as a parameter: {"params": {"filename": "mypkg-1.0-py3-none-any.whl"}}'
        )
    expect = expected_digest(p.get("sha256"), "params.sha256")
    reader = SourceReader(source)
    meta = dists.read(reader, filename)
    size = len(reader)
    digest = store_checked(reader, meta, expect, size)
    added, removed, _ = units.put(host, meta, digest, size, replace=True)
    state = "added" if added else "already present"
    return plans.summary(
        units_added=added,
        units_removed=removed,
        bytes_stored=size,
        message=f"{meta.filename} ({meta.name} {meta.version}) {state}"
        + (f", replacing {removed} other file(s) of that name" if removed else ""),
    )
