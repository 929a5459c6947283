"""Project names and distribution file names: normalizing (PEP 503),
validating, and what a file name says (wheel: PEP 427/491; sdist: PEP 625
`{name}-{version}.tar.gz`).

A file name reaches URLs, unit keys and the index pages, so it is checked
strictly before anything is stored: one path component of letters, digits
and `._+!-`, at most 255 bytes, ending in `.whl` or `.tar.gz`.
"""

import re

from wharf_sdk import PluginError

MAX_FILENAME = 255
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")
# PEP 508 names: letters/digits, with `.-_` inside.
_PROJECT = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_NORMALIZE = re.compile(r"[-_.]+")

WHEEL = "bdist_wheel"
SDIST = "sdist"


def normalize(name):
    """PEP 503: runs of `-_.` become `-`, lowercase."""
    return _NORMALIZE.sub("-", name).lower()


def is_project_name(name):
    return bool(_PROJECT.match(name)) and len(name) <= 200


def version_key(version):
    """A loose comparison key: case and the wheel escaping of `-` as `_`."""
    return version.strip().lower().replace("-", "_")


def check_filename(filename):
    """The file name, or `PluginError` (`invalid-input`) saying what is wrong."""
    if not isinstance(filename, str) or not filename:
        raise PluginError.invalid("a file name is needed (e.g. mypkg-1.0-py3-none-any.whl)")
    if len(filename.encode()) > MAX_FILENAME:
        raise PluginError.invalid(f"file name is longer than {MAX_FILENAME} bytes")
    if not _FILENAME.match(filename) or ".." in filename:
        raise PluginError.invalid(
            f"file name {filename!r} is not a distribution file name: use one path component "
            "of letters, digits and ._+!- (e.g. mypkg-1.0-py3-none-any.whl or mypkg-1.0.tar.gz)"
        )
    if not (filename.endswith(".whl") or filename.endswith(".tar.gz")):
        raise PluginError.invalid(
            f"{filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz); only those are accepted"
        )
    return filename


def packagetype(filename):
    return WHEEL if filename.endswith(".whl") else SDIST


def parse_filename(filename):
    """`(project, version)` as the file name says them (project not normalized)."""
    check_filename(filename)
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        if len(parts) not in (5, 6) or not all(parts):
            raise PluginError.invalid(
                f"{filename!r} is not a wheel file name: expected "
                "{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl"
            )
        name, version = parts[0], parts[1]
    else:
        stem = filename[: -len(".tar.gz")]
        name, sep, version = stem.rpartition("-")
        if not sep or not name or not version:
            raise PluginError.invalid(f"{filename!r} is not an sdist file name: expected {{name}}-{{version}}.tar.gz")
    if not is_project_name(name):
        raise PluginError.invalid(f"{filename!r} does not start with a valid project name")
    return name, version
