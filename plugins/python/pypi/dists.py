"""Metadata read from the archive itself, through bounded reads.

- A wheel is a zip: `zipfile` reads its central directory (at the end) and
  the one `{name}-{version}.dist-info/METADATA` member through a
  `SourceReader`, so only those bytes enter the plugin, whatever the
  wheel's size.
- An sdist is a `.tar.gz`: `tarfile` streams it until `{name}-{version}/PKG-INFO`;
  the decompressed bytes walked are bounded (`MAX_SDIST_SCAN`) and a member
  that would take the walk past the bound is refused, so a gzip bomb costs
  a bounded amount.

The archive's own name and version must agree with the file name: a wheel
called `requests-2.0-...whl` whose METADATA names another project is
refused (it would be served under the wrong project).
"""

import email.parser
import tarfile
import zipfile
import zlib
from dataclasses import dataclass

from wharf_sdk import PluginError

from . import names

#: Largest METADATA / PKG-INFO read.
MAX_METADATA = 1 << 20
#: Decompressed bytes of an sdist walked to find PKG-INFO.
MAX_SDIST_SCAN = 256 << 20
#: Members of an sdist looked at to find PKG-INFO.
MAX_SDIST_MEMBERS = 100_000


@dataclass
class DistMeta:
    filename: str
    name: str
    version: str
    requires_python: str
    summary: str
    packagetype: str

    @property
    def project(self):
        return names.normalize(self.name)


def read(reader, filename):
    """The metadata of the distribution file `filename` held by `reader`."""
    names.check_filename(filename)
    file_name, file_version = names.parse_filename(filename)
    if filename.endswith(".whl"):
        headers = _wheel_metadata(reader, filename, file_name, file_version)
        kind = names.WHEEL
    else:
        headers = _sdist_metadata(reader, filename)
        kind = names.SDIST
    name = (headers.get("Name") or "").strip()
    version = (headers.get("Version") or "").strip()
    what = "METADATA" if kind == names.WHEEL else "PKG-INFO"
    if not name or not version:
        raise PluginError.invalid(f"{filename}: its {what} has no Name or no Version")
    if not names.is_project_name(name):
        raise PluginError.invalid(f"{filename}: its {what} names {name!r}, which is not a valid project name")
    if names.normalize(name) != names.normalize(file_name):
        raise PluginError.invalid(
            f"{filename}: the file name says project {file_name!r} but its {what} says {name!r}; "
            "rebuild the distribution or name the file after the project it holds"
        )
    if names.version_key(version) != names.version_key(file_version):
        raise PluginError.invalid(
            f"{filename}: the file name says version {file_version!r} but its {what} says {version!r}"
        )
    requires_python = " ".join((headers.get("Requires-Python") or "").split())
    summary = " ".join((headers.get("Summary") or "").split())[:512]
    return DistMeta(filename, name, version, requires_python, summary, kind)


def _parse_headers(data, filename, what):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginError.invalid(f"{filename}: its {what} is not UTF-8") from None
    msg = email.parser.HeaderParser().parsestr(text)
    return {k: msg.get(k) for k in ("Name", "Version", "Requires-Python", "Summary", "Metadata-Version")}


def _wheel_metadata(reader, filename, file_name, file_version):
    try:
        archive = zipfile.ZipFile(reader)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise PluginError.invalid(f"{filename} is not a valid wheel: not a readable zip archive ({e})") from None
    with archive:
        candidates = [
            i for i in archive.infolist()
            if i.filename.endswith(".dist-info/METADATA") and i.filename.count("/") == 1
        ]
        if len(candidates) != 1:
            raise PluginError.invalid(
                f"{filename} is not a valid wheel: it must hold exactly one "
                f"{{name}}-{{version}}.dist-info/METADATA, it holds {len(candidates)}"
            )
        info = candidates[0]
        dist_info = info.filename.split("/", 1)[0][: -len(".dist-info")]
        di_name, _, _ = dist_info.rpartition("-")
        if names.normalize(di_name) != names.normalize(file_name):
            raise PluginError.invalid(
                f"{filename}: the file name says project {file_name!r} but the wheel holds {dist_info}.dist-info"
            )
        if info.file_size > MAX_METADATA:
            raise PluginError.invalid(f"{filename}: its METADATA is {info.file_size} bytes, more than {MAX_METADATA}")
        try:
            with archive.open(info) as f:
                data = f.read(MAX_METADATA + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
            raise PluginError.invalid(f"{filename} is not a valid wheel: its METADATA cannot be read ({e})") from None
        if len(data) > MAX_METADATA:
            raise PluginError.invalid(f"{filename}: its METADATA is more than {MAX_METADATA} bytes")
    return _parse_headers(data, filename, "METADATA")


def _sdist_metadata(reader, filename):
    top = filename[: -len(".tar.gz")]
    try:
        archive = tarfile.open(fileobj=reader, mode="r|gz")
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise PluginError.invalid(f"{filename} is not a valid sdist: not a gzip-compressed tar archive ({e})") from None
    try:
        with archive:
            for count, member in enumerate(archive):
                if count >= MAX_SDIST_MEMBERS:
                    break
                path = member.name[2:] if member.name.startswith("./") else member.name
                if path == f"{top}/PKG-INFO" or (
                    path.endswith("/PKG-INFO") and path.count("/") == 1
                    and names.normalize(path.split("/")[0]) == names.normalize(top)
                ):
                    if not member.isfile():
                        raise PluginError.invalid(f"{filename}: {path} is not a regular file")
                    if member.size > MAX_METADATA:
                        raise PluginError.invalid(f"{filename}: its PKG-INFO is {member.size} bytes, more than {MAX_METADATA}")
                    f = archive.extractfile(member)
                    data = f.read(MAX_METADATA + 1) if f else b""
                    return _parse_headers(data, filename, "PKG-INFO")
                if member.offset_data + member.size > MAX_SDIST_SCAN:
                    break
    except PluginError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
        raise PluginError.invalid(f"{filename} is not a valid sdist: the archive is damaged ({e})") from None
    raise PluginError.invalid(
        f"{filename} is not a valid sdist: no {top}/PKG-INFO in it "
        f"(looked through the first {MAX_SDIST_SCAN >> 20} MiB and {MAX_SDIST_MEMBERS} members)"
    )

